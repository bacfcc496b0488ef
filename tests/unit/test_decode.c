/* Tests of the request-body decoders: the API's JSON bodies (src/decode.c)
 * and Open311 form bodies (src/form.c). The refusals here are the API's
 * answers byte for byte (tests/integration/test_serve.c sees them over
 * HTTP). */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "src/decode.h"
#include "src/form.h"

static void raise_refused(const char *body, int status, const char *code, const char *msg)
{
    wh_raise_req_t req = { 0 };
    wh_decoded_t d = { 0 };
    wh_refusal_t f = { 0 };

    cr_assert_eq(wh_decode_raise(body, strlen(body), &d, &req, &f), -1, "%s", body);
    cr_assert_eq(f.status, status, "%s", body);
    cr_assert_str_eq(f.code, code);
    cr_assert_str_eq(f.msg, msg);
    wh_decoded_clear(&d);
}

static void fire_refused(const char *body, int status, const char *code, const char *msg)
{
    wh_fire_req_t req = { 0 };
    wh_decoded_t d = { 0 };
    wh_refusal_t f = { 0 };

    cr_assert_eq(wh_decode_fire(body, strlen(body), &d, &req, &f), -1, "%s", body);
    cr_assert_eq(f.status, status, "%s", body);
    cr_assert_str_eq(f.code, code);
    cr_assert_str_eq(f.msg, msg);
    wh_decoded_clear(&d);
}

Test(decode, raise_refusals_match_the_api)
{
    raise_refused("{\"title\": ", 400, "bad_request",
                  "malformed JSON at line 1, column 10: unexpected token near end of file");
    raise_refused("", 400, "bad_request", "the body is empty: a JSON object is expected");
    raise_refused("42", 400, "bad_request", "the body must be a JSON object");
    raise_refused("{\"titel\":\"x\"}", 400, "bad_request", "unknown field 'titel'");
    raise_refused("{\"title\":\"x\",\"location\":{\"street\":\"x\"}}", 400, "bad_request",
                  "unknown field 'location.street'");
    raise_refused("{\"title\":42}", 400, "bad_request", "'title' must be a string");
    raise_refused("{\"assignees\":[\"a\",7]}", 400, "bad_request",
                  "'assignees[1]' must be a string");
    raise_refused("{\"assignees\":\"a\"}", 400, "bad_request",
                  "'assignees' must be an array of org ids");
    raise_refused("{\"title\":\"\xff\xfe\"}", 400, "bad_request", "the body is not valid UTF-8");
    raise_refused("[1,2]", 400, "bad_request", "the body must be a JSON object");
    raise_refused("{\"location\":[]}", 400, "bad_request", "'location' must be an object");
    raise_refused("{\"location\":{\"grid\":3}}", 400, "bad_request",
                  "'location.grid' must be a string");
    raise_refused("{\"location\":{\"lat\":\"27\"}}", 400, "bad_request",
                  "'location.lat' must be a number");
    raise_refused("{\"title\":\"a\\u0000b\"}", 400, "bad_request",
                  "malformed JSON at line 1, column 19: \\u0000 is not allowed without "
                  "JSON_ALLOW_NUL near '\"a\\u0000b\"'");
}

Test(decode, raise_duplicate_key_is_refused)
{
    wh_raise_req_t req = { 0 };
    wh_decoded_t d = { 0 };
    wh_refusal_t f = { 0 };
    static const char body[] = "{\"title\":\"a\",\"title\":\"b\"}";

    cr_assert_eq(wh_decode_raise(body, strlen(body), &d, &req, &f), -1);
    cr_assert_eq(f.status, 400);
    cr_assert_str_eq(f.msg, "malformed JSON at line 1, column 20: duplicate object key near "
                            "'\"title\"'");
    wh_decoded_clear(&d);
}

Test(decode, raise_fields_and_nulls)
{
    static const char body[] =
        "{\"workflow\":\"whistle\",\"category\":\"road\",\"title\":\"坑\",\"description\":null,"
        "\"assignees\":[\"fire-brigade\",\"housing\"],\"external_id\":\"e-1\","
        "\"location\":{\"address\":\"1 Rd\",\"grid\":null,\"lat\":27.5,\"lon\":111}}";
    wh_raise_req_t req = { 0 };
    wh_decoded_t d = { 0 };
    wh_refusal_t f = { 0 };
    char *loc;

    cr_assert_eq(wh_decode_raise(body, strlen(body), &d, &req, &f), 0, "%s", f.msg);
    cr_assert_str_eq(req.workflow, "whistle");
    cr_assert_str_eq(req.category, "road");
    cr_assert_str_eq(req.title, "坑");
    cr_assert_null(req.description);
    cr_assert_null(req.priority);
    cr_assert_str_eq(req.external_id, "e-1");
    cr_assert(req.has_assignees);
    cr_assert_eq(req.nassignees, 2);
    cr_assert_str_eq(req.assignees[1], "housing");
    loc = json_dumps(req.location, JSON_COMPACT | JSON_SORT_KEYS);
    cr_assert_str_eq(loc, "{\"address\":\"1 Rd\",\"lat\":27.5,\"lon\":111}");
    free(loc);
    wh_decoded_clear(&d);
    cr_assert_null(d.root);
}

Test(decode, fire_refusals_and_fields)
{
    static const char body[] =
        "{\"event\":\"report\",\"note\":null,\"rating\":-3,\"assignees\":[]}";
    wh_fire_req_t req = { 0 };
    wh_decoded_t d = { 0 };
    wh_refusal_t f = { 0 };

    fire_refused("{\"note\":\"x\"}", 422, "missing_field", "event is required");
    fire_refused("{\"event\":\"report\",\"rating\":4.5}", 400, "bad_request",
                 "'rating' must be an integer");
    fire_refused("{\"event\":\"report\",\"title\":\"x\"}", 400, "bad_request",
                 "unknown field 'title'");
    fire_refused("{\"event\":7}", 400, "bad_request", "'event' must be a string");
    cr_assert_eq(wh_decode_fire(body, strlen(body), &d, &req, &f), 0, "%s", f.msg);
    cr_assert_str_eq(req.event, "report");
    cr_assert_null(req.note);
    cr_assert(req.has_rating);
    cr_assert_eq(req.rating, -3);
    cr_assert(req.has_assignees);
    cr_assert_eq(req.nassignees, 0);
    wh_decoded_clear(&d);
}

/* ---- form bodies ---- */

static const char *parse_fails(const char *body, size_t len)
{
    wh_form_t f = { 0 };
    const char *msg = NULL;
    cr_assert_eq(wh_form_parse(body, len, &f, &msg), -1, "%s", body);
    wh_form_clear(&f);
    return msg;
}

Test(form, pairs_are_decoded)
{
    static const char body[] = "api_key=k&description=Pot+hole%21&lat=27.5&flag&=v&&x=%E4%B8%AD";
    wh_form_t f = { 0 };
    const char *msg = NULL, *v;

    cr_assert_eq(wh_form_parse(body, strlen(body), &f, &msg), 0, "%s", msg);
    cr_assert_eq(f.n, 6);
    cr_assert_eq(wh_form_get(&f, "description", &v), 0);
    cr_assert_str_eq(v, "Pot hole!");
    cr_assert_eq(wh_form_get(&f, "flag", &v), 0);
    cr_assert_str_eq(v, "");
    cr_assert_eq(wh_form_get(&f, "", &v), 0);
    cr_assert_str_eq(v, "v");
    cr_assert_eq(wh_form_get(&f, "x", &v), 0);
    cr_assert_str_eq(v, "中");
    cr_assert_eq(wh_form_get(&f, "missing", &v), 0);
    cr_assert_null(v);
    wh_form_clear(&f);
}

Test(form, refusals)
{
    char many[2048] = "";
    cr_assert_str_eq(parse_fails("a=1\0b", 5), "the body holds a NUL byte");
    cr_assert_str_eq(parse_fails("a=%zz", 5), "the body has a malformed %-escape (or %00)");
    cr_assert_str_eq(parse_fails("a=%4", 4), "the body has a malformed %-escape (or %00)");
    cr_assert_str_eq(parse_fails("a=%00", 5), "the body has a malformed %-escape (or %00)");
    cr_assert_str_eq(parse_fails("%ff=1", 5), "the body is not valid UTF-8");
    for (int i = 0; i < 201; i++)
        strcat(many, "a=1&");
    cr_assert_str_eq(parse_fails(many, strlen(many)), "the body has more than 200 fields");
}

Test(form, duplicate_key_is_refused_by_get)
{
    static const char body[] = "a=1&b=2&a=3";
    wh_form_t f = { 0 };
    const char *msg = NULL, *v;

    cr_assert_eq(wh_form_parse(body, strlen(body), &f, &msg), 0);
    cr_assert_eq(wh_form_get(&f, "a", &v), -1);
    cr_assert_eq(wh_form_get(&f, "b", &v), 0);
    cr_assert_str_eq(v, "2");
    wh_form_clear(&f);
}

Test(form, url_decode_never_grows)
{
    char s[] = "%41%42+c%7e";
    cr_assert_eq(wh_form_url_decode(s), 0);
    cr_assert_str_eq(s, "AB c~");
    char t[] = "100%";
    cr_assert_eq(wh_form_url_decode(t), -1);
}
