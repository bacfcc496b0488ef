/* Strict JSON decoding of request bodies. See decode.h. The messages here
 * are part of the API (tests/integration asserts them byte for byte). */
#include "src/decode.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int wh_refuse(wh_refusal_t *f, int status, const char *code, const char *fmt, ...)
{
    va_list ap;
    f->status = status;
    f->code = code;
    va_start(ap, fmt);
    vsnprintf(f->msg, sizeof(f->msg), fmt, ap);
    va_end(ap);
    return -1;
}

void wh_decoded_clear(wh_decoded_t *d)
{
    json_decref(d->root);
    json_decref(d->location);
    free(d->assignees);
    memset(d, 0, sizeof(*d));
}

static json_t *parse_body(const char *body, size_t len, wh_refusal_t *f)
{
    json_error_t jerr;
    json_t *root =
        json_loadb(body != NULL ? body : "", len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &jerr);

    if (root == NULL) {
        if (len == 0)
            wh_refuse(f, 400, "bad_request", "the body is empty: a JSON object is expected");
        else if (json_error_code(&jerr) == json_error_invalid_utf8)
            wh_refuse(f, 400, "bad_request", "the body is not valid UTF-8");
        else
            wh_refuse(f, 400, "bad_request", "malformed JSON at line %d, column %d: %s", jerr.line,
                      jerr.column, jerr.text);
        return NULL;
    }
    if (!json_is_object(root)) {
        json_decref(root);
        wh_refuse(f, 400, "bad_request", "the body must be a JSON object");
        return NULL;
    }
    return root;
}

static int check_keys(json_t *obj, const char *const *keys, const char *prefix, wh_refusal_t *f)
{
    const char *key;
    json_t *v;
    json_object_foreach(obj, key, v)
    {
        size_t i = 0;
        while (keys[i] != NULL && strcmp(keys[i], key) != 0)
            i++;
        if (keys[i] == NULL)
            return wh_refuse(f, 400, "bad_request", "unknown field '%s%s'", prefix, key);
    }
    return 0;
}

/* An optional string field: absent or null gives NULL. */
static int get_string(json_t *obj, const char *key, const char **out, wh_refusal_t *f)
{
    json_t *v = json_object_get(obj, key);
    *out = NULL;
    if (v == NULL || json_is_null(v))
        return 0;
    if (!json_is_string(v))
        return wh_refuse(f, 400, "bad_request", "'%s' must be a string", key);
    *out = json_string_value(v);
    return 0;
}

/* An optional array of org ids; *out is malloc'ed (the strings are borrowed). */
static int get_orgs(json_t *obj, const char ***out, size_t *n, bool *has, wh_refusal_t *f)
{
    json_t *v = json_object_get(obj, "assignees");
    *out = NULL;
    *n = 0;
    *has = false;
    if (v == NULL || json_is_null(v))
        return 0;
    if (!json_is_array(v))
        return wh_refuse(f, 400, "bad_request", "'assignees' must be an array of org ids");
    *out = calloc(json_array_size(v) + 1, sizeof(**out));
    if (*out == NULL)
        return wh_refuse(f, 503, "unavailable", "out of memory");
    for (size_t i = 0; i < json_array_size(v); i++) {
        json_t *e = json_array_get(v, i);
        if (!json_is_string(e))
            return wh_refuse(f, 400, "bad_request", "'assignees[%zu]' must be a string", i);
        (*out)[i] = json_string_value(e);
    }
    *n = json_array_size(v);
    *has = true;
    return 0;
}

/* Only the type here (400); the range is the engine's to check, after it
 * has decided whether the org may raise at all (403 before 422). */
static int get_coord(json_t *loc, const char *key, wh_refusal_t *f)
{
    json_t *v = json_object_get(loc, key);
    if (v == NULL || json_is_null(v))
        return 0;
    if (!json_is_number(v))
        return wh_refuse(f, 400, "bad_request", "'location.%s' must be a number", key);
    return 0;
}

/* Checks location and copies it without its null members into *out. */
static int get_location(json_t *obj, json_t **out, wh_refusal_t *f)
{
    static const char *const keys[] = { "address", "grid", "lat", "lon", NULL };
    json_t *v = json_object_get(obj, "location"), *m;
    const char *key;

    *out = NULL;
    if (v == NULL || json_is_null(v))
        return 0;
    if (!json_is_object(v))
        return wh_refuse(f, 400, "bad_request", "'location' must be an object");
    if (check_keys(v, keys, "location.", f) != 0)
        return -1;
    for (int i = 0; i < 2; i++)
        if (!json_is_null(m = json_object_get(v, keys[i])) && m != NULL && !json_is_string(m))
            return wh_refuse(f, 400, "bad_request", "'location.%s' must be a string", keys[i]);
    if (get_coord(v, "lat", f) != 0 || get_coord(v, "lon", f) != 0)
        return -1;
    if ((*out = json_object()) == NULL)
        return wh_refuse(f, 503, "unavailable", "out of memory");
    json_object_foreach(v, key, m)
    {
        if (!json_is_null(m))
            json_object_set(*out, key, m);
    }
    return 0;
}

int wh_decode_raise(const char *body, size_t len, wh_decoded_t *d, wh_raise_req_t *req,
                    wh_refusal_t *f)
{
    static const char *const keys[] = { "workflow",    "category",    "title",
                                        "description", "priority",    "location",
                                        "assignees",   "external_id", NULL };
    json_t *o;
    size_t n = 0;
    bool has = false;

    if ((o = d->root = parse_body(body, len, f)) == NULL || check_keys(o, keys, "", f) != 0)
        return -1;
    if (get_string(o, "workflow", &req->workflow, f) != 0 ||
        get_string(o, "category", &req->category, f) != 0 ||
        get_string(o, "title", &req->title, f) != 0 ||
        get_string(o, "description", &req->description, f) != 0 ||
        get_string(o, "priority", &req->priority, f) != 0 ||
        get_string(o, "external_id", &req->external_id, f) != 0 ||
        get_orgs(o, &d->assignees, &n, &has, f) != 0 || get_location(o, &d->location, f) != 0)
        return -1;
    req->assignees = d->assignees;
    req->nassignees = n;
    req->has_assignees = has;
    req->location = d->location;
    return 0;
}

int wh_decode_fire(const char *body, size_t len, wh_decoded_t *d, wh_fire_req_t *req,
                   wh_refusal_t *f)
{
    static const char *const keys[] = { "event", "note", "assignees", "rating", NULL };
    json_t *o, *rating;
    size_t n = 0;
    bool has = false;

    if ((o = d->root = parse_body(body, len, f)) == NULL || check_keys(o, keys, "", f) != 0)
        return -1;
    if (get_string(o, "event", &req->event, f) != 0 || get_string(o, "note", &req->note, f) != 0 ||
        get_orgs(o, &d->assignees, &n, &has, f) != 0)
        return -1;
    rating = json_object_get(o, "rating");
    if (rating != NULL && !json_is_null(rating)) {
        if (!json_is_integer(rating))
            return wh_refuse(f, 400, "bad_request", "'rating' must be an integer");
        req->has_rating = true;
        req->rating = json_integer_value(rating);
    }
    req->assignees = d->assignees;
    req->nassignees = n;
    req->has_assignees = has;
    if (req->event == NULL)
        return wh_refuse(f, 422, "missing_field", "event is required");
    return 0;
}
