/* application/x-www-form-urlencoded bodies (Open311 POST requests, SPEC §8):
 * pure functions on bytes, used by src/open311.c and fuzz/fuzz_form.c. */
#ifndef WH_FORM_H
#define WH_FORM_H

#include <stdbool.h>
#include <stddef.h>

/* The most fields one body may hold. */
#define WH_FORM_MAX_FIELDS 200

/* Decoded pairs; keys and values point into buf. Zero it before use. */
typedef struct {
    char *buf;
    const char *key[WH_FORM_MAX_FIELDS], *val[WH_FORM_MAX_FIELDS];
    size_t n;
} wh_form_t;

/* Decodes s in place ('+' is a space, %XX a byte); a bad escape or %00
 * fails (-1). The result is never longer than s. Returns 0 or -1. */
int wh_form_url_decode(char *s);

/* Whether s (NUL-terminated) is valid UTF-8. */
bool wh_form_valid_utf8(const char *s);

/* Splits body (len bytes, NUL bytes refused) on '&' into decoded key=value
 * pairs (a pair without '=' has the value ""; empty pairs are skipped).
 * Returns 0, or -1 with *msg set to the API's message. Free f with
 * wh_form_clear either way. */
int wh_form_parse(const char *body, size_t len, wh_form_t *f, const char **msg);

/* The value of key (NULL when absent). Returns 0, or -1 when the key is
 * given twice. */
int wh_form_get(const wh_form_t *f, const char *key, const char **out);

/* Frees what f holds and zeroes it. Accepts a zeroed f. */
void wh_form_clear(wh_form_t *f);

#endif
