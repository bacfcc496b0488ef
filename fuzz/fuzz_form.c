/* libFuzzer target: the Open311 form decoder (src/form.c). Checked for
 * every input:
 * - url_decode never writes more than it read, and on success its output,
 *   %-encoded again, decodes to itself;
 * - a parsed body has at most 200 fields, each key and value valid UTF-8;
 *   the pairs encoded again parse to the same pairs, and wh_form_get finds
 *   a key given once and refuses one given twice;
 * - a refusal carries one of the API's messages. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "fuzz/fuzz_util.h"
#include "src/form.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* %-encodes s into a fresh string: unreserved bytes as they are, the rest
 * as %XX (a space as '+' when plus is set). */
static char *encode(const char *s, bool plus)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t n = strlen(s);
    char *out = malloc(3 * n + 1), *w = out;

    FUZZ_CHECK(out != NULL);
    for (; *s != '\0'; s++) {
        unsigned char c = (unsigned char)*s;
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
            c == '-' || c == '_' || c == '.' || c == '~') {
            *w++ = (char)c;
        } else if (c == ' ' && plus) {
            *w++ = '+';
        } else {
            *w++ = '%';
            *w++ = hex[c >> 4];
            *w++ = hex[c & 15];
        }
    }
    *w = '\0';
    return out;
}

static void fuzz_url_decode(const uint8_t *data, size_t size)
{
    char *s = malloc(size + 1), *again;
    size_t in_len;

    FUZZ_CHECK(s != NULL);
    memcpy(s, data, size);
    s[size] = '\0';
    in_len = strlen(s);
    if (wh_form_url_decode(s) == 0) {
        FUZZ_CHECK(strlen(s) <= in_len);
        again = encode(s, size % 2 == 0);
        FUZZ_CHECK(wh_form_url_decode(again) == 0 && strcmp(again, s) == 0);
        free(again);
    } else {
        /* Only a bad escape fails, so the input has a '%'. */
        FUZZ_CHECK(memchr(data, '%', in_len) != NULL);
    }
    free(s);
}

/* The pairs of f as a fresh form body. */
static char *form_body(const wh_form_t *f)
{
    size_t cap = 1, len = 0;
    char *out;

    for (size_t i = 0; i < f->n; i++)
        cap += 3 * (strlen(f->key[i]) + strlen(f->val[i])) + 2;
    FUZZ_CHECK((out = malloc(cap)) != NULL);
    out[0] = '\0';
    for (size_t i = 0; i < f->n; i++) {
        char *k = encode(f->key[i], true), *v = encode(f->val[i], false);
        len += (size_t)snprintf(out + len, cap - len, "%s%s=%s", i > 0 ? "&" : "", k, v);
        free(k);
        free(v);
    }
    return out;
}

static void check_get(const wh_form_t *f, size_t i)
{
    size_t count = 0;
    const char *v;
    for (size_t j = 0; j < f->n; j++)
        count += strcmp(f->key[j], f->key[i]) == 0;
    if (count == 1)
        FUZZ_CHECK(wh_form_get(f, f->key[i], &v) == 0 && v == f->val[i]);
    else
        FUZZ_CHECK(wh_form_get(f, f->key[i], &v) != 0);
}

static void fuzz_parse(const uint8_t *data, size_t size)
{
    wh_form_t f = { 0 }, g = { 0 };
    const char *msg = NULL;
    char *body;

    if (wh_form_parse((const char *)data, size, &f, &msg) != 0) {
        FUZZ_CHECK(msg != NULL);
        FUZZ_CHECK(strcmp(msg, "the body holds a NUL byte") == 0 ||
                   strcmp(msg, "the body has more than 200 fields") == 0 ||
                   strcmp(msg, "the body has a malformed %-escape (or %00)") == 0 ||
                   strcmp(msg, "the body is not valid UTF-8") == 0 ||
                   strcmp(msg, "out of memory") == 0);
        wh_form_clear(&f);
        return;
    }
    FUZZ_CHECK(f.n <= WH_FORM_MAX_FIELDS);
    for (size_t i = 0; i < f.n; i++) {
        FUZZ_CHECK(wh_form_valid_utf8(f.key[i]) && wh_form_valid_utf8(f.val[i]));
        check_get(&f, i);
    }
    body = form_body(&f);
    FUZZ_CHECK(wh_form_parse(body, strlen(body), &g, &msg) == 0);
    /* An empty pair ("&&" or "=") makes an empty key; both spellings agree. */
    FUZZ_CHECK(g.n == f.n);
    for (size_t i = 0; i < f.n; i++)
        FUZZ_CHECK(strcmp(f.key[i], g.key[i]) == 0 && strcmp(f.val[i], g.val[i]) == 0);
    free(body);
    wh_form_clear(&g);
    wh_form_clear(&f);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_url_decode(data, size);
    fuzz_parse(data, size);
    return 0;
}
