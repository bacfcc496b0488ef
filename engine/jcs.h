/* RFC 8785 JSON Canonicalization Scheme (JCS) over jansson values, and the
 * event hash chain of SPEC §6.
 *
 * Only the JSON whistle hashes is supported: objects, arrays, strings,
 * integers, true, false and null. Real numbers are refused (WH_EINVAL): the
 * event log stores lat/lon as decimal strings in hashed rows precisely so that
 * no float formatting enters a hash. */
#ifndef WH_JCS_H
#define WH_JCS_H

#include <jansson.h>
#include <openssl/evp.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* How whistle writes real numbers (lat/lon) everywhere outside hashes: 15
 * significant digits, so a coordinate given as 27.24 reads back as 27.24
 * rather than as its nearest double's 17 digits. */
#define WH_JSON_REAL JSON_REAL_PRECISION(15)

/* Serializes v canonically into a malloc'd NUL-terminated string (*out,
 * *len). Returns 0, WH_EINVAL (a real number, invalid UTF-8) or WH_ENOMEM. */
int wh_jcs_dump(const json_t *v, char **out, size_t *len);

/* OpenSSL's SHA-256, fetched once for the process (EVP_sha256() makes
 * every digest look it up again under a lock). */
const EVP_MD *wh_sha256_md(void);

/* hash = lowercase hex SHA-256(prev_hash_hex || JCS(row)); prev_hash_hex is
 * 64 hex characters (64 zeros before the first row). out needs 65 bytes.
 * Returns 0 or what wh_jcs_dump returns. */
int wh_jcs_chain_hash(const char *prev_hash_hex, const json_t *row, char out[65]);
/* The same over a row's canonical text already made (len bytes). */
int wh_jcs_chain_hash_text(const char *prev_hash_hex, const char *canon, size_t len, char out[65]);

/* JSON text put together from parts, for rows whose canonical form is known
 * in advance (the hashed event row, with its data serialized once): zero it
 * to start, append, then take the text with wh_jcs_finish. After a failure
 * (err) further appends do nothing. */
typedef struct {
    char *buf;
    size_t len, cap;
    int err;
} wh_jcs_out_t;
/* Appends n bytes of text as they are. */
void wh_jcs_raw(wh_jcs_out_t *o, const char *s, size_t n);
/* Appends s as a JCS string (UTF-8 checked), or null when s is NULL. */
void wh_jcs_string(wh_jcs_out_t *o, const char *s);
void wh_jcs_int(wh_jcs_out_t *o, int64_t v);
/* The shortest decimal that reads back as d (strtod), as "%.15g", "%.16g"
 * or "%.17g" writes it, the first that does; out has len >= 40 bytes. */
void wh_jcs_shortest(double d, char *out, size_t len);
/* Writes v in decimal (as "%lld" would) and a NUL; returns its length. */
size_t wh_jcs_itoa(char out[21], int64_t v);
/* Appends `"key":`, after a comma unless it is the object's first member.
 * key is a member name of whistle's own, which needs no escaping. */
void wh_jcs_key(wh_jcs_out_t *o, const char *key, bool first);
/* Hands the NUL-terminated text (malloc'd) to *out and its length to *len
 * (may be NULL) and returns 0; or frees it and returns WH_EINVAL (a real
 * number, invalid UTF-8, nothing appended) or WH_ENOMEM. Resets o. */
int wh_jcs_finish(wh_jcs_out_t *o, char **out, size_t *len);

#endif
