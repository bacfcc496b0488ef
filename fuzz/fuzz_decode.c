/* libFuzzer target: the JSON bodies of POST /v1/tickets and POST
 * /v1/tickets/{id}/events (src/decode.c). Checked for every input:
 * - a refusal has a status the API documents, with its code and a message,
 *   and decoding the same bytes again refuses the same way;
 * - a decoded request encoded again as JSON (absent fields left out, then
 *   given as null) decodes to the same fields. */
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "fuzz/fuzz_util.h"
#include "src/decode.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static bool same_str(const char *a, const char *b)
{
    return (a == NULL && b == NULL) || (a != NULL && b != NULL && strcmp(a, b) == 0);
}

static void check_refusal(const wh_refusal_t *f, const wh_refusal_t *again)
{
    FUZZ_CHECK((f->status == 400 && strcmp(f->code, "bad_request") == 0) ||
               (f->status == 422 && strcmp(f->code, "missing_field") == 0) ||
               (f->status == 503 && strcmp(f->code, "unavailable") == 0));
    FUZZ_CHECK(f->msg[0] != '\0' && memchr(f->msg, '\0', sizeof(f->msg)) != NULL);
    FUZZ_CHECK(again->status == f->status && strcmp(again->code, f->code) == 0 &&
               strcmp(again->msg, f->msg) == 0);
}

/* Sets key to s, or to null when nulls is set and s is NULL. */
static void put_str(json_t *o, const char *key, const char *s, bool nulls)
{
    if (s != NULL)
        json_object_set_new(o, key, json_string(s));
    else if (nulls)
        json_object_set_new(o, key, json_null());
}

static void put_orgs(json_t *o, const char *const *v, size_t n, bool has, bool nulls)
{
    json_t *a;
    if (!has) {
        if (nulls)
            json_object_set_new(o, "assignees", json_null());
        return;
    }
    a = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(a, json_string(v[i]));
    json_object_set_new(o, "assignees", a);
}

static bool same_orgs(const char *const *a, size_t na, bool ha, const char *const *b, size_t nb,
                      bool hb)
{
    if (ha != hb || na != nb)
        return false;
    for (size_t i = 0; i < na; i++)
        if (strcmp(a[i], b[i]) != 0)
            return false;
    return true;
}

static char *raise_json(const wh_raise_req_t *q, bool nulls, size_t *len)
{
    json_t *o = json_object();
    char *s;

    put_str(o, "workflow", q->workflow, nulls);
    put_str(o, "category", q->category, nulls);
    put_str(o, "title", q->title, nulls);
    put_str(o, "description", q->description, nulls);
    put_str(o, "priority", q->priority, nulls);
    put_str(o, "external_id", q->external_id, nulls);
    put_orgs(o, q->assignees, q->nassignees, q->has_assignees, nulls);
    if (q->location != NULL)
        json_object_set(o, "location", (json_t *)q->location);
    else if (nulls)
        json_object_set_new(o, "location", json_null());
    s = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    FUZZ_CHECK(s != NULL);
    *len = strlen(s);
    return s;
}

/* The location keeps only known members, none of them null, each typed. */
static void check_location(const json_t *loc)
{
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)loc, key, v)
    {
        bool text = strcmp(key, "address") == 0 || strcmp(key, "grid") == 0;
        bool coord = strcmp(key, "lat") == 0 || strcmp(key, "lon") == 0;
        FUZZ_CHECK((text && json_is_string(v)) || (coord && json_is_number(v)));
    }
}

static void round_trip_raise(const wh_raise_req_t *q, bool nulls)
{
    wh_raise_req_t r2 = { 0 };
    wh_decoded_t d2 = { 0 };
    wh_refusal_t f2;
    size_t len;
    char *s = raise_json(q, nulls, &len);

    FUZZ_CHECK(wh_decode_raise(s, len, &d2, &r2, &f2) == 0);
    FUZZ_CHECK(same_str(q->workflow, r2.workflow) && same_str(q->category, r2.category) &&
               same_str(q->title, r2.title) && same_str(q->description, r2.description) &&
               same_str(q->priority, r2.priority) && same_str(q->external_id, r2.external_id));
    FUZZ_CHECK(same_orgs(q->assignees, q->nassignees, q->has_assignees, r2.assignees, r2.nassignees,
                         r2.has_assignees));
    FUZZ_CHECK((q->location == NULL && r2.location == NULL) ||
               (q->location != NULL && r2.location != NULL &&
                json_equal((json_t *)q->location, (json_t *)r2.location)));
    wh_decoded_clear(&d2);
    free(s);
}

static void fuzz_raise(const char *body, size_t len)
{
    wh_raise_req_t q = { 0 }, q2 = { 0 };
    wh_decoded_t d = { 0 }, d2 = { 0 };
    wh_refusal_t f, f2;

    if (wh_decode_raise(body, len, &d, &q, &f) == 0) {
        FUZZ_CHECK(q.has_assignees || (q.nassignees == 0 && q.assignees == NULL));
        if (q.location != NULL)
            check_location(q.location);
        round_trip_raise(&q, false);
        round_trip_raise(&q, true);
    } else {
        FUZZ_CHECK(wh_decode_raise(body, len, &d2, &q2, &f2) != 0);
        check_refusal(&f, &f2);
        FUZZ_CHECK(f.status != 422);
    }
    wh_decoded_clear(&d);
    wh_decoded_clear(&d2);
}

static void round_trip_fire(const wh_fire_req_t *q, bool nulls)
{
    wh_fire_req_t r2 = { 0 };
    wh_decoded_t d2 = { 0 };
    wh_refusal_t f2;
    json_t *o = json_object();
    char *s;

    put_str(o, "event", q->event, nulls);
    put_str(o, "note", q->note, nulls);
    put_orgs(o, q->assignees, q->nassignees, q->has_assignees, nulls);
    if (q->has_rating)
        json_object_set_new(o, "rating", json_integer((json_int_t)q->rating));
    else if (nulls)
        json_object_set_new(o, "rating", json_null());
    s = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    FUZZ_CHECK(s != NULL);
    FUZZ_CHECK(wh_decode_fire(s, strlen(s), &d2, &r2, &f2) == 0);
    FUZZ_CHECK(same_str(q->event, r2.event) && same_str(q->note, r2.note));
    FUZZ_CHECK(q->has_rating == r2.has_rating && (!q->has_rating || q->rating == r2.rating));
    FUZZ_CHECK(same_orgs(q->assignees, q->nassignees, q->has_assignees, r2.assignees, r2.nassignees,
                         r2.has_assignees));
    wh_decoded_clear(&d2);
    free(s);
}

static void fuzz_fire(const char *body, size_t len)
{
    wh_fire_req_t q = { 0 }, q2 = { 0 };
    wh_decoded_t d = { 0 }, d2 = { 0 };
    wh_refusal_t f, f2;

    if (wh_decode_fire(body, len, &d, &q, &f) == 0) {
        FUZZ_CHECK(q.event != NULL);
        round_trip_fire(&q, false);
        round_trip_fire(&q, true);
    } else {
        FUZZ_CHECK(wh_decode_fire(body, len, &d2, &q2, &f2) != 0);
        check_refusal(&f, &f2);
        /* Only a well-typed body without an event is refused with 422. */
        FUZZ_CHECK(f.status != 422 || q.event == NULL);
    }
    wh_decoded_clear(&d);
    wh_decoded_clear(&d2);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* Both decoders see every input: the seeds of one grow into the other. */
    fuzz_raise((const char *)data, size);
    fuzz_fire((const char *)data, size);
    return 0;
}
