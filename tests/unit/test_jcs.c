#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "engine/error.h"
#include "engine/jcs.h"

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
