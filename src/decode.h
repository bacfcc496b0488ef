/* Strict JSON decoding of the API's request bodies (SPEC §4): POST
 * /v1/tickets and POST /v1/tickets/{id}/events. Pure functions on bytes, so
 * that the API uses them and the fuzz targets (fuzz/fuzz_decode.c) reach
 * them without an HTTP request.
 *
 * A body is refused with the status, code and message the API answers:
 * 400 bad_request for malformed JSON, invalid UTF-8, a duplicate or unknown
 * key or a value of the wrong type; 422 missing_field for a fire without
 * event; 503 unavailable when out of memory. */
#ifndef WH_DECODE_H
#define WH_DECODE_H

#include <jansson.h>
#include <stddef.h>

#include "engine/engine.h"

/* A refusal decided by the API itself: status, code, message. */
typedef struct {
    int status;
    const char *code; /* static */
    char msg[200];
} wh_refusal_t;

/* Fills f (the message formatted, truncated to its buffer). Returns -1. */
int wh_refuse(wh_refusal_t *f, int status, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* What a decoded request borrows its strings from; zero it before use and
 * clear it (also after a refusal) once the request is no longer needed. */
typedef struct {
    json_t *root;
    json_t *location;
    const char **assignees;
} wh_decoded_t;

/* Releases what d holds and zeroes it. Accepts a zeroed d. */
void wh_decoded_clear(wh_decoded_t *d);

/* Decodes a POST /v1/tickets body into *req (zeroed by the caller), whose
 * strings live in *d. Returns 0, or -1 with *f filled. */
int wh_decode_raise(const char *body, size_t len, wh_decoded_t *d, wh_raise_req_t *req,
                    wh_refusal_t *f);

/* Decodes a POST /v1/tickets/{id}/events body into *req (zeroed by the
 * caller), whose strings live in *d. Returns 0, or -1 with *f filled. */
int wh_decode_fire(const char *body, size_t len, wh_decoded_t *d, wh_fire_req_t *req,
                   wh_refusal_t *f);

#endif
