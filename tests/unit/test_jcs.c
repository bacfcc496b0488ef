#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "engine/error.h"
#include "engine/jcs.h"
#include "engine/store.h"

static char *canon(const char *json)
{
    json_error_t err;
    json_t *v = json_loads(json, JSON_DECODE_ANY, &err);
    char *out = NULL;
    cr_assert_not_null(v, "%s", err.text);
    cr_assert_eq(wh_jcs_dump(v, &out, NULL), 0);
    json_decref(v);
    return out;
}

Test(jcs, sorts_keys_and_strips_space)
{
    char *s = canon("{ \"b\": [1, true, null], \"a\": { \"z\": \"x\", \"y\": -3 } }");
    cr_assert_str_eq(s, "{\"a\":{\"y\":-3,\"z\":\"x\"},\"b\":[1,true,null]}");
    free(s);
}

Test(jcs, escapes_like_ecmascript)
{
    char *s = canon("\"\\u0001\\n\\\"\\\\/\\u007f\\u4e2d\"");
    /* controls escaped (lower-case hex), '/', DEL and CJK left as they are */
    cr_assert_str_eq(s, "\"\\u0001\\n\\\"\\\\/\x7f\xe4\xb8\xad\"");
    free(s);
}

Test(jcs, sorts_by_utf16_code_units)
{
    /* U+FF61 sorts after U+1F600 in UTF-16 (0xD83D < 0xFF61) but before it in UTF-8. */
    char *s = canon("{\"\xef\xbd\xa1\": 1, \"\xf0\x9f\x98\x80\": 2, \"a\": 0}");
    cr_assert_str_eq(s, "{\"a\":0,\"\xf0\x9f\x98\x80\":2,\"\xef\xbd\xa1\":1}");
    free(s);
}

Test(jcs, refuses_reals)
{
    json_t *v = json_pack("{s:f}", "lat", 27.2);
    char *out = NULL;
    cr_assert_eq(wh_jcs_dump(v, &out, NULL), WH_EINVAL);
    cr_assert_null(out);
    json_decref(v);
}

Test(jcs, chain_hash_is_sha256_of_prev_and_row)
{
    /* sha256("0"*64 + "{}") computed independently with sha256sum. */
    json_t *v = json_object();
    char zeros[65], h[65];
    memset(zeros, '0', 64);
    zeros[64] = '\0';
    cr_assert_eq(wh_jcs_chain_hash(zeros, v, h), 0);
    cr_assert_str_eq(h, "5508d2b710e64bc470079e1b211d9c58e21011e59d0559e422345dc19d659a75");
    json_decref(v);
}

/* The hashed event row put together from its data's canonical text equals
 * the canonical form of the row built as JSON (what `whistle verify` does). */
Test(jcs, composed_hash_row_equals_the_built_one)
{
    static const char *const notes[] = { NULL, "",
                                         "到场 \"3号楼\"\n\t\x01\x7f /\\ \xf0\x9f\x98\x80" };
    static const char *const datas[] = {
        "{}", "{\"b\":[1,true,null],\"a\":{\"z\":\"\u4e2d\",\"y\":-3}}",
        "{\"assignees\":[\"fire-brigade\"],\"location\":{\"lat\":\"27.24\"},\"note\":\"\\u0000\"}"
    };
    for (size_t n = 0; n < sizeof(notes) / sizeof(notes[0]); n++)
        for (size_t d = 0; d < sizeof(datas) / sizeof(datas[0]); d++) {
            json_t *data = json_loads(datas[d], JSON_ALLOW_NUL, NULL);
            char *canon_data = NULL, *built = NULL, *composed;
            size_t built_len = 0, composed_len = 0;
            cr_assert_not_null(data, "%s", datas[d]);
            cr_assert_eq(wh_jcs_dump(data, &canon_data, NULL), 0);
            json_t *row = wh_store_hash_row_data(7, 1764120600, "report", "fire-brigade",
                                                 n ? "whistled" : NULL, "reported", notes[n], data);
            cr_assert_eq(wh_jcs_dump(row, &built, &built_len), 0);
            composed =
                wh_store_hash_text(7, 1764120600, "report", "fire-brigade", n ? "whistled" : NULL,
                                   "reported", notes[n], canon_data, &composed_len);
            cr_assert_not_null(composed);
            cr_assert_str_eq(composed, built);
            cr_assert_eq(composed_len, built_len);
            free(canon_data);
            free(built);
            free(composed);
            json_decref(row);
            json_decref(data);
        }
    cr_assert_null(wh_store_hash_text(1, 0, "raise", "a", NULL, NULL, "\xff", "{}", NULL),
                   "invalid UTF-8 is refused");
}
