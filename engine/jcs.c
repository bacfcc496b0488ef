#include <openssl/evp.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "engine/error.h"
#include "engine/jcs.h"

typedef wh_jcs_out_t out_t;

static void put(out_t *o, const char *s, size_t n)
{
    if (o->err != 0)
        return;
    if (o->len + n + 1 > o->cap) {
        /* Most texts a change makes (a ticket, an event row, a message)
         * are near 1 KiB: start there rather than grow to it. */
        size_t cap = o->cap ? o->cap : 1024;
        while (cap < o->len + n + 1)
            cap *= 2;
        char *b = realloc(o->buf, cap);
        if (b == NULL) {
            o->err = WH_ENOMEM;
            return;
        }
        o->buf = b;
        o->cap = cap;
    }
    memcpy(o->buf + o->len, s, n);
    o->len += n;
    o->buf[o->len] = '\0';
}

/* Decodes one UTF-8 sequence at s (n bytes left); returns its length, or 0
 * when invalid (overlong, surrogate, beyond U+10FFFF, truncated). */
static size_t utf8_decode(const unsigned char *s, size_t n, uint32_t *cp)
{
    size_t len;
    uint32_t c = s[0], min;
    if (c < 0x80) {
        *cp = c;
        return 1;
    }
    if ((c & 0xE0) == 0xC0)
        len = 2, c &= 0x1F, min = 0x80;
    else if ((c & 0xF0) == 0xE0)
        len = 3, c &= 0x0F, min = 0x800;
    else if ((c & 0xF8) == 0xF0)
        len = 4, c &= 0x07, min = 0x10000;
    else
        return 0;
    if (len > n)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return 0;
        c = (c << 6) | (s[i] & 0x3F);
    }
    if (c < min || c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF))
        return 0;
    *cp = c;
    return len;
}

/* JCS strings: escape only '"', '\\' and controls (short forms where JSON
 * has them, else \u00xx in lower case); everything else as UTF-8, copied
 * in runs between the characters that need escaping. */
static void put_string(out_t *o, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0, run = 0;
    uint32_t cp;

    put(o, "\"", 1);
    while (i < n) {
        unsigned char c = p[i];
        if (c >= 0x80) {
            size_t len = utf8_decode(p + i, n - i, &cp);
            if (len == 0) {
                o->err = WH_EINVAL;
                return;
            }
            i += len;
            continue;
        }
        if (c >= 0x20 && c != '"' && c != '\\') {
            i++;
            continue;
        }
        put(o, s + run, i - run);
        if (c == '"' || c == '\\') {
            char e[2] = { '\\', (char)c };
            put(o, e, 2);
        } else {
            const char *shortform = c == '\b'   ? "\\b"
                                    : c == '\t' ? "\\t"
                                    : c == '\n' ? "\\n"
                                    : c == '\f' ? "\\f"
                                    : c == '\r' ? "\\r"
                                                : NULL;
            char e[6] = { '\\', 'u', '0', '0', hex[c >> 4], hex[c & 15] };
            if (shortform != NULL)
                put(o, shortform, 2);
            else
                put(o, e, 6);
        }
        run = ++i;
    }
    put(o, s + run, n - run);
    put(o, "\"", 1);
}

/* Compares two UTF-8 keys by their UTF-16 code units, as JCS sorts. */
static int cmp_utf16(const char *a, const char *b)
{
    const unsigned char *pa = (const unsigned char *)a, *pb = (const unsigned char *)b;
    size_t na = strlen(a), nb = strlen(b), ia = 0, ib = 0;

    while (ia < na && ib < nb) {
        uint32_t ca = 0, cb = 0;
        size_t la = utf8_decode(pa + ia, na - ia, &ca), lb = utf8_decode(pb + ib, nb - ib, &cb);
        if (la == 0 || lb == 0)
            return strcmp(a + ia, b + ib);
        /* Supplementary planes sort as their high surrogate (0xD800-0xDBFF). */
        uint32_t ua = ca >= 0x10000 ? 0xD800 + ((ca - 0x10000) >> 10) : ca;
        uint32_t ub = cb >= 0x10000 ? 0xD800 + ((cb - 0x10000) >> 10) : cb;
        if (ua != ub)
            return ua < ub ? -1 : 1;
        if (ca != cb)
            return ca < cb ? -1 : 1;
        ia += la;
        ib += lb;
    }
    return (ia < na) - (ib < nb);
}

static int cmp_keys(const void *a, const void *b)
{
    return cmp_utf16(*(const char *const *)a, *(const char *const *)b);
}

static void put_value(out_t *o, const json_t *v, int depth);

static void put_object(out_t *o, const json_t *v, int depth)
{
    size_t n = json_object_size(v), i = 0;
    const char **keys = malloc((n ? n : 1) * sizeof(*keys));
    const char *key;
    json_t *member;

    if (keys == NULL) {
        o->err = WH_ENOMEM;
        return;
    }
    json_object_foreach((json_t *)v, key, member) keys[i++] = key;
    qsort(keys, n, sizeof(*keys), cmp_keys);
    put(o, "{", 1);
    for (i = 0; i < n && o->err == 0; i++) {
        if (i > 0)
            put(o, ",", 1);
        put_string(o, keys[i], strlen(keys[i]));
        put(o, ":", 1);
        put_value(o, json_object_get(v, keys[i]), depth + 1);
    }
    put(o, "}", 1);
    free(keys);
}

static void put_value(out_t *o, const json_t *v, int depth)
{
    char num[32];

    if (depth > 64) {
        o->err = WH_EINVAL;
        return;
    }
    switch (json_typeof(v)) {
    case JSON_OBJECT:
        put_object(o, v, depth);
        break;
    case JSON_ARRAY:
        put(o, "[", 1);
        for (size_t i = 0; i < json_array_size(v) && o->err == 0; i++) {
            if (i > 0)
                put(o, ",", 1);
            put_value(o, json_array_get(v, i), depth + 1);
        }
        put(o, "]", 1);
        break;
    case JSON_STRING:
        put_string(o, json_string_value(v), json_string_length(v));
        break;
    case JSON_INTEGER:
        put(o, num, (size_t)snprintf(num, sizeof(num), "%lld", (long long)json_integer_value(v)));
        break;
    case JSON_TRUE:
        put(o, "true", 4);
        break;
    case JSON_FALSE:
        put(o, "false", 5);
        break;
    case JSON_NULL:
        put(o, "null", 4);
        break;
    default: /* JSON_REAL: see the header */
        o->err = WH_EINVAL;
        break;
    }
}

int wh_jcs_dump(const json_t *v, char **out, size_t *len)
{
    out_t o = { 0 };

    put_value(&o, v, 0);
    return wh_jcs_finish(&o, out, len);
}

static EVP_MD *sha256;

static void fetch_sha256(void)
{
    sha256 = EVP_MD_fetch(NULL, "SHA256", NULL);
}

/* SHA-256 fetched once: OpenSSL 3 looks the algorithm up under a lock at
 * every EVP_DigestInit_ex given EVP_sha256(), a third of a row's hash. */
const EVP_MD *wh_sha256_md(void)
{
    static uv_once_t once = UV_ONCE_INIT;
    uv_once(&once, fetch_sha256);
    return sha256 != NULL ? sha256 : EVP_sha256();
}

int wh_jcs_chain_hash_text(const char *prev_hash_hex, const char *canon, size_t len, char out[65])
{
    static const char hex[] = "0123456789abcdef";
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    int rc = 0;

    if (ctx == NULL || !EVP_DigestInit_ex(ctx, wh_sha256_md(), NULL) ||
        !EVP_DigestUpdate(ctx, prev_hash_hex, strlen(prev_hash_hex)) ||
        !EVP_DigestUpdate(ctx, canon, len) || !EVP_DigestFinal_ex(ctx, md, &mdlen)) {
        rc = WH_ENOMEM;
        goto out;
    }
    for (unsigned int i = 0; i < mdlen && i < 32; i++) {
        out[2 * i] = hex[md[i] >> 4];
        out[2 * i + 1] = hex[md[i] & 15];
    }
    out[64] = '\0';
out:
    EVP_MD_CTX_free(ctx);
    return rc;
}

int wh_jcs_chain_hash(const char *prev_hash_hex, const json_t *row, char out[65])
{
    char *canon = NULL;
    size_t len = 0;
    int rc = wh_jcs_dump(row, &canon, &len);

    if (rc == 0)
        rc = wh_jcs_chain_hash_text(prev_hash_hex, canon, len, out);
    free(canon);
    return rc;
}

void wh_jcs_raw(wh_jcs_out_t *o, const char *s, size_t n)
{
    put(o, s, n);
}

void wh_jcs_string(wh_jcs_out_t *o, const char *s)
{
    if (s == NULL)
        put(o, "null", 4);
    else
        put_string(o, s, strlen(s));
}

size_t wh_jcs_itoa(char out[21], int64_t v)
{
    /* The magnitude as unsigned, so INT64_MIN has one too. */
    uint64_t m = v < 0 ? 0 - (uint64_t)v : (uint64_t)v;
    char rev[20];
    size_t n = 0, len = 0;

    do {
        rev[n++] = (char)('0' + m % 10);
        m /= 10;
    } while (m != 0);
    if (v < 0)
        out[len++] = '-';
    while (n > 0)
        out[len++] = rev[--n];
    out[len] = '\0';
    return len;
}

/* The shortest decimal with at most 15 fractional digits that reads back
 * as d, written as %.15g writes it, without printf: d = n / 10^k for the
 * least k, with n an integer. n / 10^k, both exact in a double, is rounded
 * once, as strtod rounds the decimal, so the test is exact. Only where %g
 * writes no exponent (1e-4 <= |d| < 1e15) and for n of at most 15 digits:
 * then d * 10^k is within 0.11 of n, and %.15g rounds d to that same
 * decimal (any other 15-digit one is further from d than its rounding
 * error). False otherwise, and the caller formats with printf. */
static bool short_fixed(double d, char *out, size_t len)
{
    static const double pow10[] = { 1e0, 1e1, 1e2,  1e3,  1e4,  1e5,  1e6,  1e7,
                                    1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15 };
    double a = fabs(d);

    if (!(a >= 1e-4 && a < 1e15) || len < 40)
        return false;
    for (int k = 0; k < 16; k++) {
        double v = d * pow10[k];
        if (fabs(v) >= 1e15)
            return false;
        int64_t n = (int64_t)llround(v);
        if ((double)n / pow10[k] != d)
            continue;
        /* n with a decimal point k digits from its end. */
        char digits[21];
        size_t nd = wh_jcs_itoa(digits, n < 0 ? -n : n), at = 0;
        if (n < 0)
            out[at++] = '-';
        if (nd <= (size_t)k) {
            out[at++] = '0';
            out[at++] = '.';
            for (size_t z = nd; z < (size_t)k; z++)
                out[at++] = '0';
            memcpy(out + at, digits, nd);
            at += nd;
        } else {
            memcpy(out + at, digits, nd - (size_t)k);
            at += nd - (size_t)k;
            if (k > 0) {
                out[at++] = '.';
                memcpy(out + at, digits + nd - (size_t)k, (size_t)k);
                at += (size_t)k;
            }
        }
        out[at] = '\0';
        return true;
    }
    return false;
}

/* The shortest decimal that reads back as d: what the raiser most likely
 * typed (27.24, not 27.239999999999998). short_fixed finds it for most
 * coordinates. Otherwise: a normal double that came from a decimal of at
 * most 15 significant digits (DBL_DIG) rounds back to it at 15 digits, and
 * %g drops the zeros that pad it; failing that 16 digits, or 17, which
 * always read back. */
void wh_jcs_shortest(double d, char *out, size_t len)
{
    if (short_fixed(d, out, len))
        return;
    for (int digits = 15; digits < 17; digits++) {
        snprintf(out, len, "%.*g", digits, d);
        if (strtod(out, NULL) == d)
            return;
    }
    snprintf(out, len, "%.17g", d);
}

void wh_jcs_int(wh_jcs_out_t *o, int64_t v)
{
    char num[21];
    put(o, num, wh_jcs_itoa(num, v));
}

void wh_jcs_key(wh_jcs_out_t *o, const char *key, bool first)
{
    put(o, first ? "\"" : ",\"", first ? 1 : 2);
    put(o, key, strlen(key));
    put(o, "\":", 2);
}

int wh_jcs_finish(wh_jcs_out_t *o, char **out, size_t *len)
{
    int rc = o->err != 0 ? o->err : o->buf == NULL ? WH_EINVAL : 0;

    *out = NULL;
    if (rc != 0) {
        free(o->buf);
    } else {
        *out = o->buf;
        if (len != NULL)
            *len = o->len;
    }
    *o = (wh_jcs_out_t){ 0 };
    return rc;
}
