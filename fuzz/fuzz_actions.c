/* libFuzzer target: action-link tokens (engine/actions.c). Checked for
 * every input:
 * - the input as a token: if it is accepted (or accepted but expired),
 *   making the token again from what was read gives the input exactly, and
 *   another key refuses it;
 * - a token made by the real signer for fields taken from the input checks
 *   back to those fields, and changing any one of its bytes (to the value
 *   the input picks, or to the next byte) makes it refused. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "engine/actions.h"
#include "engine/error.h"
#include "fuzz/fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const unsigned char key1[WH_ACTIONS_KEY_LEN] = "whistle fuzz key one, 32 bytes.";
static const unsigned char key2[WH_ACTIONS_KEY_LEN] = "whistle fuzz key two, 32 bytes.";

static bool same_action(const wh_action_t *a, const wh_action_t *b)
{
    return strcmp(a->ticket, b->ticket) == 0 && strcmp(a->org, b->org) == 0 &&
           strcmp(a->event, b->event) == 0 && a->expires == b->expires;
}

/* The input as a token, checked at a clock taken from its first byte. */
static void fuzz_check(const uint8_t *data, size_t size)
{
    char *token = malloc(size + 1), again[WH_ACTIONS_TOKEN_MAX];
    wh_action_t a, b;
    int rc;

    FUZZ_CHECK(token != NULL);
    memcpy(token, data, size);
    token[size] = '\0';
    rc = wh_actions_check(key1, token, size > 0 ? (int64_t)data[0] * 1000 : 0, &a);
    FUZZ_CHECK(rc == 0 || rc == WH_ENOENT || rc == WH_EFORBIDDEN);
    if (rc != WH_ENOENT) {
        FUZZ_CHECK(wh_actions_make(key1, &a, again, sizeof(again)) == 0);
        FUZZ_CHECK(strcmp(again, token) == 0);
        FUZZ_CHECK(wh_actions_check(key2, token, 0, &b) == WH_ENOENT);
    }
    free(token);
}

/* Copies the next field of in into dst (cut to the field limit). */
static void take(fuzz_in_t *in, char *dst)
{
    char *s = fuzz_field(in);
    FUZZ_CHECK(s != NULL);
    snprintf(dst, WH_ACTIONS_FIELD_MAX + 1, "%s", s);
    free(s);
}

static void check_mutants(const char *token, uint8_t pick)
{
    size_t len = strlen(token);
    char m[WH_ACTIONS_TOKEN_MAX];
    wh_action_t out;

    /* One change per position, alternating the two kinds, keeps it fast. */
    for (size_t i = 0; i < len; i++) {
        char c = i % 2 == 0 ? (char)pick : (char)(token[i] + 1);
        if (c == token[i])
            c = (char)(token[i] ^ 0x20);
        memcpy(m, token, len + 1);
        m[i] = c;
        FUZZ_CHECK(wh_actions_check(key1, m, 0, &out) == WH_ENOENT);
    }
}

/* ticket NUL org NUL event NUL expiry(8 bytes) pick(1 byte). */
static void fuzz_make(const uint8_t *data, size_t size)
{
    fuzz_in_t in = { data, size };
    wh_action_t a = { 0 }, b;
    char token[WH_ACTIONS_TOKEN_MAX];
    uint64_t e = 0;
    int rc;

    take(&in, a.ticket);
    take(&in, a.org);
    take(&in, a.event);
    for (int i = 0; i < 8; i++)
        e = e << 8 | fuzz_byte(&in);
    a.expires = (int64_t)e;
    rc = wh_actions_make(key1, &a, token, sizeof(token));
    if (rc != 0) {
        /* Only an unusable field is refused: empty or holding a newline. */
        FUZZ_CHECK(rc == WH_EINVAL);
        FUZZ_CHECK(a.ticket[0] == '\0' || a.org[0] == '\0' || a.event[0] == '\0' ||
                   strchr(a.ticket, '\n') || strchr(a.org, '\n') || strchr(a.event, '\n'));
        return;
    }
    FUZZ_CHECK(strlen(token) < WH_ACTIONS_TOKEN_MAX);
    rc = wh_actions_check(key1, token, a.expires, &b);
    FUZZ_CHECK(rc == WH_EFORBIDDEN && same_action(&a, &b));
    if (a.expires > INT64_MIN) {
        FUZZ_CHECK(wh_actions_check(key1, token, a.expires - 1, &b) == 0 && same_action(&a, &b));
    }
    FUZZ_CHECK(wh_actions_check(key2, token, INT64_MIN, &b) == WH_ENOENT);
    check_mutants(token, fuzz_byte(&in));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_check(data, size);
    fuzz_make(data, size);
    return 0;
}
