/* Action-link tokens (engine/actions.c): a known vector, round trips,
 * altered and malformed tokens, expiry, and the key kept in the database. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine/actions.h"
#include "engine/error.h"
#include "engine/store.h"

#define EXPIRES 1800000000

static unsigned char key[WH_ACTIONS_KEY_LEN];

static void setup(void)
{
    for (int i = 0; i < WH_ACTIONS_KEY_LEN; i++)
        key[i] = (unsigned char)i;
}

TestSuite(actions, .init = setup);

static wh_action_t sample(void)
{
    wh_action_t a = { .expires = EXPIRES };
    strcpy(a.ticket, "T-1");
    strcpy(a.org, "fire");
    strcpy(a.event, "report");
    return a;
}

Test(actions, known_vector)
{
    /* Computed independently with Python's hmac and base64 modules. */
    wh_action_t a = sample();
    char tok[WH_ACTIONS_TOKEN_MAX];
    cr_assert_eq(wh_actions_make(key, &a, tok, sizeof(tok)), 0);
    cr_assert_str_eq(tok, "VC0xCmZpcmUKcmVwb3J0CjE4MDAwMDAwMDA."
                          "fG8HvJA5J7I0oyVpq1S_kKUVQTtdpASWle-wlAqPTjs");
}

Test(actions, round_trip)
{
    wh_action_t a = sample(), b;
    char tok[WH_ACTIONS_TOKEN_MAX];
    strcpy(a.ticket, "20261126-0001-abcdef");
    strcpy(a.org, "district-housing");
    strcpy(a.event, "accept");
    cr_assert_eq(wh_actions_make(key, &a, tok, sizeof(tok)), 0);
    cr_assert_eq(wh_actions_check(key, tok, EXPIRES - 1, &b), 0);
    cr_assert_str_eq(b.ticket, "20261126-0001-abcdef");
    cr_assert_str_eq(b.org, "district-housing");
    cr_assert_str_eq(b.event, "accept");
    cr_assert_eq(b.expires, EXPIRES);
    cr_assert_eq(strspn(tok, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_."),
                 strlen(tok), "%s", tok);
}

Test(actions, expired)
{
    wh_action_t a = sample(), b;
    char tok[WH_ACTIONS_TOKEN_MAX];
    cr_assert_eq(wh_actions_make(key, &a, tok, sizeof(tok)), 0);
    cr_assert_eq(wh_actions_check(key, tok, EXPIRES, &b), WH_EFORBIDDEN);
    cr_assert_str_eq(b.event, "report"); /* filled for the caller's message */
    cr_assert_eq(wh_actions_check(key, tok, EXPIRES + 86400, &b), WH_EFORBIDDEN);
    cr_assert_eq(wh_actions_check(key, tok, EXPIRES - 1, &b), 0);
}

Test(actions, every_altered_character_is_refused)
{
    static const char alphabet[] = "Aa0-_";
    wh_action_t a = sample(), b;
    char tok[WH_ACTIONS_TOKEN_MAX], bad[WH_ACTIONS_TOKEN_MAX + 2];
    size_t n;

    cr_assert_eq(wh_actions_make(key, &a, tok, sizeof(tok)), 0);
    n = strlen(tok);
    for (size_t i = 0; i < n; i++) {
        for (const char *c = alphabet; *c; c++) {
            if (tok[i] == *c)
                continue;
            memcpy(bad, tok, n + 1);
            bad[i] = *c;
            cr_assert_eq(wh_actions_check(key, bad, 0, &b), WH_ENOENT, "%s", bad);
        }
    }
    /* Truncated or extended. */
    memcpy(bad, tok, n + 1);
    bad[n - 1] = '\0';
    cr_assert_eq(wh_actions_check(key, bad, 0, &b), WH_ENOENT);
    snprintf(bad, sizeof(bad), "%sA", tok);
    cr_assert_eq(wh_actions_check(key, bad, 0, &b), WH_ENOENT);
}

Test(actions, other_key_or_forged_payload_refused)
{
    unsigned char other[WH_ACTIONS_KEY_LEN] = { 0 };
    wh_action_t a = sample(), b;
    char tok[WH_ACTIONS_TOKEN_MAX], forged[WH_ACTIONS_TOKEN_MAX];

    cr_assert_eq(wh_actions_make(key, &a, tok, sizeof(tok)), 0);
    cr_assert_eq(wh_actions_check(other, tok, 0, &b), WH_ENOENT);
    /* Another org's payload with this token's MAC. */
    strcpy(a.org, "police");
    cr_assert_eq(wh_actions_make(key, &a, forged, sizeof(forged)), 0);
    strcpy(strchr(forged, '.'), strchr(tok, '.'));
    cr_assert_eq(wh_actions_check(key, forged, 0, &b), WH_ENOENT);
}

Test(actions, malformed_refused)
{
    static const char *const bad[] = { "",      ".",     "abc",      "abc.",        ".abc",
                                       "!!.xx", "a.b.c", "VC0x.===", "VC0xCmZpcmUK" };
    wh_action_t b;
    char longtok[2000];

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        cr_assert_eq(wh_actions_check(key, bad[i], 0, &b), WH_ENOENT, "%s", bad[i]);
    cr_assert_eq(wh_actions_check(key, NULL, 0, &b), WH_ENOENT);
    memset(longtok, 'A', sizeof(longtok) - 1);
    longtok[sizeof(longtok) - 1] = '\0';
    longtok[800] = '.';
    cr_assert_eq(wh_actions_check(key, longtok, 0, &b), WH_ENOENT);
}

Test(actions, make_refuses_unusable_fields)
{
    wh_action_t a = sample();
    char tok[WH_ACTIONS_TOKEN_MAX];
    strcpy(a.event, "re\nport");
    cr_assert_eq(wh_actions_make(key, &a, tok, sizeof(tok)), WH_EINVAL);
    a = sample();
    a.org[0] = '\0';
    cr_assert_eq(wh_actions_make(key, &a, tok, sizeof(tok)), WH_EINVAL);
    a = sample();
    cr_assert_eq(wh_actions_make(key, &a, tok, 20), WH_ETOOBIG);
    /* The longest fields still fit WH_ACTIONS_TOKEN_MAX. */
    memset(a.ticket, 'x', WH_ACTIONS_FIELD_MAX);
    memset(a.org, 'y', WH_ACTIONS_FIELD_MAX);
    memset(a.event, 'z', WH_ACTIONS_FIELD_MAX);
    a.ticket[WH_ACTIONS_FIELD_MAX] = a.org[WH_ACTIONS_FIELD_MAX] = a.event[WH_ACTIONS_FIELD_MAX] =
        0;
    a.expires = INT64_MIN;
    cr_assert_eq(wh_actions_make(key, &a, tok, sizeof(tok)), 0);
    wh_action_t b;
    cr_assert_eq(wh_actions_check(key, tok, INT64_MIN, &b), WH_EFORBIDDEN);
    cr_assert_eq(b.expires, INT64_MIN);
}

static void load_key(const char *path, unsigned char *out)
{
    wh_store_t *s = NULL;
    char err[256] = "";
    cr_assert_eq(wh_store_open(path, false, false, &s, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(wh_actions_load_key(s, out), 0);
    wh_store_close(s);
}

Test(actions, key_is_made_once_per_database)
{
    char p1[128], p2[128];
    unsigned char k1[WH_ACTIONS_KEY_LEN], k1again[WH_ACTIONS_KEY_LEN], k2[WH_ACTIONS_KEY_LEN];
    unsigned char zero[WH_ACTIONS_KEY_LEN] = { 0 };

    snprintf(p1, sizeof(p1), "/tmp/wh-actions-%d-1.db", (int)getpid());
    snprintf(p2, sizeof(p2), "/tmp/wh-actions-%d-2.db", (int)getpid());
    unlink(p1);
    unlink(p2);
    load_key(p1, k1);
    load_key(p1, k1again);
    load_key(p2, k2);
    cr_assert_eq(memcmp(k1, k1again, sizeof(k1)), 0);
    cr_assert_neq(memcmp(k1, k2, sizeof(k1)), 0);
    cr_assert_neq(memcmp(k1, zero, sizeof(k1)), 0);
    for (int i = 0; i < 2; i++) {
        char side[160];
        const char *p = i ? p2 : p1;
        unlink(p);
        snprintf(side, sizeof(side), "%s-wal", p);
        unlink(side);
        snprintf(side, sizeof(side), "%s-shm", p);
        unlink(side);
    }
}
