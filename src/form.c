/* Form bodies. See form.h. The messages are part of the Open311 API
 * (tests/integration/test_open311.c asserts them). */
#include "src/form.h"

#include <ctype.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = (char)tolower((unsigned char)c);
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

int wh_form_url_decode(char *s)
{
    char *w = s;
    for (const char *p = s; *p != '\0'; p++) {
        if (*p == '%') {
            int hi = hexval(p[1]), lo = hi >= 0 ? hexval(p[2]) : -1;
            if (lo < 0 || hi * 16 + lo == 0)
                return -1;
            *w++ = (char)(hi * 16 + lo);
            p += 2;
        } else {
            *w++ = *p == '+' ? ' ' : *p;
        }
    }
    *w = '\0';
    return 0;
}

bool wh_form_valid_utf8(const char *s)
{
    json_t *j = json_string(s); /* jansson refuses invalid UTF-8 */
    bool ok = j != NULL;
    json_decref(j);
    return ok;
}

int wh_form_parse(const char *body, size_t len, wh_form_t *f, const char **msg)
{
    char *save = NULL;

    if (len > 0 && memchr(body, '\0', len) != NULL)
        return *msg = "the body holds a NUL byte", -1;
    if ((f->buf = strndup(len > 0 ? body : "", len)) == NULL)
        return *msg = "out of memory", -1;
    for (char *p = strtok_r(f->buf, "&", &save); p != NULL; p = strtok_r(NULL, "&", &save)) {
        char *eq = strchr(p, '=');
        if (eq != NULL)
            *eq++ = '\0';
        if (f->n == WH_FORM_MAX_FIELDS)
            return *msg = "the body has more than 200 fields", -1;
        if (wh_form_url_decode(p) != 0 || (eq != NULL && wh_form_url_decode(eq) != 0))
            return *msg = "the body has a malformed %-escape (or %00)", -1;
        if (!wh_form_valid_utf8(p) || (eq != NULL && !wh_form_valid_utf8(eq)))
            return *msg = "the body is not valid UTF-8", -1;
        f->key[f->n] = p;
        f->val[f->n++] = eq != NULL ? eq : "";
    }
    return 0;
}

int wh_form_get(const wh_form_t *f, const char *key, const char **out)
{
    *out = NULL;
    for (size_t i = 0; i < f->n; i++) {
        if (strcmp(f->key[i], key) != 0)
            continue;
        if (*out != NULL)
            return -1;
        *out = f->val[i];
    }
    return 0;
}

void wh_form_clear(wh_form_t *f)
{
    free(f->buf);
    memset(f, 0, sizeof(*f));
}
