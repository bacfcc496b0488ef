/* Action-link tokens. See actions.h. */
#include "engine/actions.h"

#include <inttypes.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/engine_int.h"
#include "engine/error.h"

#define MAC_LEN 32
/* The payload: three fields, three newlines, an expiry. */
#define PAYLOAD_MAX (3 * (WH_ACTIONS_FIELD_MAX + 1) + 24)

/* base64url without padding: OpenSSL's base64, then the URL alphabet. */
static size_t b64url_encode(const unsigned char *in, size_t len, char *out)
{
    int n = EVP_EncodeBlock((unsigned char *)out, in, (int)len);
    while (n > 0 && out[n - 1] == '=')
        n--;
    for (int i = 0; i < n; i++)
        out[i] = out[i] == '+' ? '-' : out[i] == '/' ? '_' : out[i];
    out[n] = '\0';
    return (size_t)n;
}

/* Decodes len characters of base64url into out (room for len bytes);
 * returns the decoded length or -1. Non-canonical encodings are caught later,
 * when the whole token is made again and compared. */
static int b64url_decode(const char *in, size_t len, unsigned char *out)
{
    char buf[PAYLOAD_MAX * 2];
    size_t n = 0, pad;
    int got;

    if (len == 0 || len % 4 == 1 || len + 3 >= sizeof(buf))
        return -1;
    for (size_t i = 0; i < len; i++) {
        char c = in[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '_'))
            return -1;
        buf[n++] = c == '-' ? '+' : c == '_' ? '/' : c;
    }
    pad = (4 - len % 4) % 4;
    for (size_t i = 0; i < pad; i++)
        buf[n++] = '=';
    got = EVP_DecodeBlock(out, (const unsigned char *)buf, (int)n);
    return got < 0 ? -1 : got - (int)pad;
}

static bool field_ok(const char *s)
{
    size_t n = strlen(s);
    return n > 0 && n <= WH_ACTIONS_FIELD_MAX && strchr(s, '\n') == NULL;
}

/* token = b64(payload) "." b64(mac) for the payload's bytes. With mac, a
 * context keyed once (wh_actions_mac_new), the MAC costs a reinit, not
 * OpenSSL's one-shot HMAC's fetch and key setup (a sixth of the time). */
static int sign(const unsigned char *key, EVP_MAC_CTX *mac_ctx, const unsigned char *payload,
                size_t len, char *out, size_t outlen)
{
    unsigned char mac[MAC_LEN];
    unsigned int maclen = MAC_LEN;
    char tmp[WH_ACTIONS_TOKEN_MAX];
    size_t n, got = 0;

    if (mac_ctx != NULL) {
        if (EVP_MAC_init(mac_ctx, NULL, 0, NULL) != 1 ||
            EVP_MAC_update(mac_ctx, payload, len) != 1 ||
            EVP_MAC_final(mac_ctx, mac, &got, sizeof(mac)) != 1 || got != MAC_LEN)
            return WH_ENOMEM;
    } else if (HMAC(EVP_sha256(), key, WH_ACTIONS_KEY_LEN, payload, len, mac, &maclen) == NULL) {
        return WH_ENOMEM;
    }
    n = b64url_encode(payload, len, tmp);
    tmp[n++] = '.';
    n += b64url_encode(mac, MAC_LEN, tmp + n);
    if (n + 1 > outlen)
        return WH_ETOOBIG;
    memcpy(out, tmp, n + 1);
    return 0;
}

static int make(const unsigned char *key, EVP_MAC_CTX *mac_ctx, const wh_action_t *a, char *out,
                size_t outlen)
{
    char payload[PAYLOAD_MAX];
    int n;

    if (!field_ok(a->ticket) || !field_ok(a->org) || !field_ok(a->event))
        return WH_EINVAL;
    n = snprintf(payload, sizeof(payload), "%s\n%s\n%s\n%" PRId64, a->ticket, a->org, a->event,
                 a->expires);
    if (n < 0 || (size_t)n >= sizeof(payload))
        return WH_EINVAL;
    return sign(key, mac_ctx, (const unsigned char *)payload, (size_t)n, out, outlen);
}

int wh_actions_make(const unsigned char key[WH_ACTIONS_KEY_LEN], const wh_action_t *a, char *out,
                    size_t outlen)
{
    return make(key, NULL, a, out, outlen);
}

EVP_MAC_CTX *wh_actions_mac_new(const unsigned char key[WH_ACTIONS_KEY_LEN])
{
    EVP_MAC *hmac = EVP_MAC_fetch(NULL, "HMAC", NULL);
    EVP_MAC_CTX *ctx = hmac != NULL ? EVP_MAC_CTX_new(hmac) : NULL;
    char digest[] = "SHA256";
    OSSL_PARAM params[] = { OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0),
                            OSSL_PARAM_construct_end() };

    EVP_MAC_free(hmac); /* the context holds its own reference */
    if (ctx != NULL && EVP_MAC_init(ctx, key, WH_ACTIONS_KEY_LEN, params) != 1) {
        EVP_MAC_CTX_free(ctx);
        ctx = NULL;
    }
    return ctx;
}

/* Splits a verified payload into its fields. */
static int parse_payload(char *p, wh_action_t *out)
{
    char *f[4], *end = NULL;
    long long exp;

    for (int i = 0; i < 3; i++) {
        f[i] = p;
        if ((p = strchr(p, '\n')) == NULL)
            return WH_ENOENT;
        *p++ = '\0';
    }
    f[3] = p;
    exp = strtoll(f[3], &end, 10);
    if (end == f[3] || *end != '\0')
        return WH_ENOENT;
    for (int i = 0; i < 3; i++)
        if (!field_ok(f[i]))
            return WH_ENOENT;
    snprintf(out->ticket, sizeof(out->ticket), "%s", f[0]);
    snprintf(out->org, sizeof(out->org), "%s", f[1]);
    snprintf(out->event, sizeof(out->event), "%s", f[2]);
    out->expires = (int64_t)exp;
    return 0;
}

static int check(const unsigned char *key, EVP_MAC_CTX *mac_ctx, const char *token, int64_t now,
                 wh_action_t *out)
{
    unsigned char payload[PAYLOAD_MAX * 2];
    char expect[WH_ACTIONS_TOKEN_MAX];
    const char *dot;
    size_t len;
    int n, rc;

    memset(out, 0, sizeof(*out));
    if (token == NULL || (len = strlen(token)) >= WH_ACTIONS_TOKEN_MAX ||
        (dot = strchr(token, '.')) == NULL)
        return WH_ENOENT;
    n = b64url_decode(token, (size_t)(dot - token), payload);
    if (n <= 0 || (size_t)n >= PAYLOAD_MAX || memchr(payload, '\0', (size_t)n) != NULL)
        return WH_ENOENT;
    /* Making the token again and comparing the whole of it checks the MAC
     * and rejects every other spelling of the same bytes. */
    if (sign(key, mac_ctx, payload, (size_t)n, expect, sizeof(expect)) != 0 ||
        strlen(expect) != len || CRYPTO_memcmp(expect, token, len) != 0)
        return WH_ENOENT;
    payload[n] = '\0';
    if ((rc = parse_payload((char *)payload, out)) != 0)
        return rc;
    return out->expires <= now ? WH_EFORBIDDEN : 0;
}

int wh_actions_check(const unsigned char key[WH_ACTIONS_KEY_LEN], const char *token, int64_t now,
                     wh_action_t *out)
{
    return check(key, NULL, token, now, out);
}

/* ---- the key ---- */

static int hex_decode(const char *s, unsigned char *out, size_t n)
{
    if (s == NULL || strlen(s) != 2 * n)
        return -1;
    for (size_t i = 0; i < n; i++) {
        unsigned int b;
        if (sscanf(s + 2 * i, "%2x", &b) != 1)
            return -1;
        out[i] = (unsigned char)b;
    }
    return 0;
}

/* Reads the stored key: 1 found, 0 absent, or a WH_E* code. */
static int read_key(wh_store_t *s, unsigned char *key)
{
    sqlite3_stmt *st = wh_store_stmt(s, WH_STMT_META_GET);
    int rc = wh_store_bind(s, st, "s", "action_key");
    if (rc == 0 && (rc = wh_store_step(s, st)) == 1) {
        rc = hex_decode(wh_store_col_text(st, 0), key, WH_ACTIONS_KEY_LEN) == 0 ? 1 : WH_ECORRUPT;
        sqlite3_reset(st);
    }
    return rc;
}

static int make_key(wh_store_t *s, unsigned char *key)
{
    static const char hex[] = "0123456789abcdef";
    char text[2 * WH_ACTIONS_KEY_LEN + 1];
    sqlite3_stmt *st;
    int rc;

    if (RAND_bytes(key, WH_ACTIONS_KEY_LEN) != 1)
        return WH_EIO;
    for (size_t i = 0; i < WH_ACTIONS_KEY_LEN; i++) {
        text[2 * i] = hex[key[i] >> 4];
        text[2 * i + 1] = hex[key[i] & 15];
    }
    text[2 * WH_ACTIONS_KEY_LEN] = '\0';
    st = wh_store_stmt(s, WH_STMT_META_PUT);
    rc = wh_store_bind(s, st, "ss", "action_key", text);
    if (rc == 0)
        rc = wh_store_exec(s, st);
    OPENSSL_cleanse(text, sizeof(text));
    return rc;
}

int wh_actions_load_key(wh_store_t *s, unsigned char key[WH_ACTIONS_KEY_LEN])
{
    /* The common case, a key already there, needs no write transaction. */
    int rc = read_key(s, key);
    if (rc != 0)
        return rc == 1 ? 0 : rc;
    /* BEGIN IMMEDIATE: two processes opening a new database at once agree
     * on one key (the second reads the first's). */
    if ((rc = wh_store_begin(s)) != 0)
        return rc;
    rc = read_key(s, key);
    if (rc == 0)
        rc = make_key(s, key);
    else if (rc == 1)
        rc = 0;
    if (rc == 0)
        rc = wh_store_commit(s);
    if (rc != 0)
        wh_store_rollback(s);
    return rc;
}

/* ---- with the engine ---- */

int wh_engine_action_check(wh_engine_t *e, const char *token, wh_action_t *out)
{
    return check(e->action_key, e->action_mac, token, wh_engine_now(e), out);
}

char *wh_engine_action_url(wh_engine_t *e, const wh_action_t *a)
{
    char token[WH_ACTIONS_TOKEN_MAX], *url;
    size_t n;

    if (e->opt.public_url == NULL ||
        make(e->action_key, e->action_mac, a, token, sizeof(token)) != 0)
        return NULL;
    n = strlen(e->opt.public_url) + sizeof("/v1/actions/") + strlen(token);
    if ((url = malloc(n)) != NULL)
        snprintf(url, n, "%s/v1/actions/%s", e->opt.public_url, token);
    return url;
}
