/* Helpers shared by the fuzz targets: property checks that abort (so that
 * libFuzzer saves the input) and a splitter of the input into fields. */
#ifndef WH_FUZZ_UTIL_H
#define WH_FUZZ_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A property that must hold for every input. */
#define FUZZ_CHECK(cond)                                                                \
    do {                                                                                \
        if (!(cond)) {                                                                  \
            fprintf(stderr, "%s:%d: property failed: %s\n", __FILE__, __LINE__, #cond); \
            abort();                                                                    \
        }                                                                               \
    } while (0)

/* The input, consumed from the front. */
typedef struct {
    const uint8_t *p;
    size_t n;
} fuzz_in_t;

/* The next field up to a NUL byte (or the end) as a malloc'ed C string, or
 * NULL when out of memory. */
static inline char *fuzz_field(fuzz_in_t *in)
{
    const uint8_t *nul = memchr(in->p, '\0', in->n);
    size_t len = nul != NULL ? (size_t)(nul - in->p) : in->n;
    char *s = malloc(len + 1);

    if (s != NULL) {
        if (len > 0)
            memcpy(s, in->p, len);
        s[len] = '\0';
    }
    in->p += len + (nul != NULL);
    in->n -= len + (nul != NULL);
    return s;
}

/* The next byte, 0 at the end. */
static inline uint8_t fuzz_byte(fuzz_in_t *in)
{
    uint8_t b = 0;
    if (in->n > 0) {
        b = in->p[0];
        in->p++;
        in->n--;
    }
    return b;
}

#endif
