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

/* What wh_jcs_shortest must always give: the first of %.15g, %.16g and
 * %.17g that reads back. */
static void shortest_by_printf(double d, char *out, size_t len)
{
    for (int digits = 15; digits < 17; digits++) {
        snprintf(out, len, "%.*g", digits, d);
        if (strtod(out, NULL) == d)
            return;
    }
    snprintf(out, len, "%.17g", d);
}

/* Its printf-free path agrees with printf on decimals of every length and
 * scale (coordinates among them), on doubles of random bits, and on the
 * edges of the range it takes (1e-4, 1e15, 15 digits). */
Test(jcs, shortest_decimal_agrees_with_printf)
{
    static const double edges[] = { 27.24,
                                    111.47,
                                    0.1 + 0.2,
                                    1e-4,
                                    -1e-4,
                                    9.9999e-5,
                                    1e15,
                                    999999999999999.0,
                                    1e15 - 1,
                                    0.5,
                                    -0.5,
                                    120.0,
                                    -0.000001,
                                    0.0,
                                    -0.0,
                                    1e-300,
                                    1.5e300,
                                    39.90419989999999,
                                    116.40739630000001 };
    char got[48], want[48];
    uint64_t x = 0x9e3779b97f4a7c15u;
    size_t fast = 0;

    for (size_t i = 0; i < sizeof(edges) / sizeof(edges[0]); i++) {
        wh_jcs_shortest(edges[i], got, sizeof(got));
        shortest_by_printf(edges[i], want, sizeof(want));
        cr_assert_str_eq(got, want, "%.17g", edges[i]);
    }
    for (int i = 0; i < 200000; i++) {
        double d;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        if (i % 2 == 0) {
            /* A decimal of 1-16 digits with its point anywhere in 12 places. */
            int digits = 1 + (int)(x % 16), point = (int)((x >> 8) % 20);
            uint64_t n = (x >> 16) % 10000000000000000u;
            for (int k = digits; k < 16; k++)
                n /= 10;
            snprintf(got, sizeof(got), "%s%llue-%d", x & 1 ? "-" : "", (unsigned long long)n,
                     point);
            d = strtod(got, NULL);
        } else {
            memcpy(&d, &x, sizeof(d));
        }
        wh_jcs_shortest(d, got, sizeof(got));
        shortest_by_printf(d, want, sizeof(want));
        cr_assert_str_eq(got, want, "%.17g", d);
        fast += strchr(got, 'e') == NULL && strlen(got) < 17;
    }
    cr_assert_gt(fast, 50000, "the test reaches the printf-free path (%zu)", fast);
}
