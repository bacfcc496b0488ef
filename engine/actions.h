/* Action links (SPEC §4, §5): signed tokens that let the holder of a link
 * fire one event on one ticket as the org the link was made for.
 *
 * A token is base64url(payload) "." base64url(HMAC-SHA256(key, payload)),
 * without padding, where payload is "ticket\norg\nevent\nexpiry" (expiry in
 * Unix seconds, decimal). The key is 32 random bytes made once per database
 * and kept in its `meta` table (key 'action_key', hex). A token says nothing
 * about whether the event is still allowed: the engine decides that when it
 * is fired. */
#ifndef WH_ACTIONS_H
#define WH_ACTIONS_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/evp.h>

#include "engine/engine.h"
#include "engine/store.h"

#define WH_ACTIONS_KEY_LEN 32
/* The longest ticket id, org id or event name a token carries. */
#define WH_ACTIONS_FIELD_MAX 128
/* Room for any token (with its NUL). */
#define WH_ACTIONS_TOKEN_MAX 640

typedef struct {
    char ticket[WH_ACTIONS_FIELD_MAX + 1];
    char org[WH_ACTIONS_FIELD_MAX + 1];
    char event[WH_ACTIONS_FIELD_MAX + 1];
    int64_t expires; /* Unix seconds; the link is refused from this second on */
} wh_action_t;

/* Writes the token for a into out (outlen bytes, WH_ACTIONS_TOKEN_MAX is
 * always enough). Returns 0, WH_EINVAL (an empty field, one holding a
 * newline, or one over WH_ACTIONS_FIELD_MAX bytes), WH_ETOOBIG (outlen too
 * small) or WH_ENOMEM. */
int wh_actions_make(const unsigned char key[WH_ACTIONS_KEY_LEN], const wh_action_t *a, char *out,
                    size_t outlen);

/* An HMAC-SHA256 context keyed with key, for the engine to sign and check
 * with (wh_engine_action_url, wh_engine_action_check) without setting the
 * key up each time; NULL when OpenSSL cannot make one. Free it with
 * EVP_MAC_CTX_free. */
EVP_MAC_CTX *wh_actions_mac_new(const unsigned char key[WH_ACTIONS_KEY_LEN]);

/* Checks token (signature compared in constant time) and fills *out.
 * Returns 0; WH_ENOENT for anything malformed, altered or signed with another
 * key (the API answers 404, as for an unknown ticket); WH_EFORBIDDEN for an
 * authentic token whose expiry is <= now (the API answers 403
 * action_expired). *out is filled for an expired token too. */
int wh_actions_check(const unsigned char key[WH_ACTIONS_KEY_LEN], const char *token, int64_t now,
                     wh_action_t *out);

/* Reads the database's key, making and storing one on first use (in its own
 * transaction). Returns 0, WH_ESTORAGE or WH_EIO (no random bytes). */
int wh_actions_load_key(wh_store_t *s, unsigned char key[WH_ACTIONS_KEY_LEN]);

/* wh_actions_check with the engine's key and clock. */
int wh_engine_action_check(wh_engine_t *e, const char *token, wh_action_t *out);

/* The link for a as "<public_url>/v1/actions/<token>" with the engine's key,
 * or NULL (out of memory, an unusable field). The caller frees it. */
char *wh_engine_action_url(wh_engine_t *e, const wh_action_t *a);

#endif
