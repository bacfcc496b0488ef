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
#include <stddef.h>

/* How whistle writes real numbers (lat/lon) everywhere outside hashes: 15
 * significant digits, so a coordinate given as 27.24 reads back as 27.24
 * rather than as its nearest double's 17 digits. */
#define WH_JSON_REAL JSON_REAL_PRECISION(15)

/* Serializes v canonically into a malloc'd NUL-terminated string (*out,
 * *len). Returns 0, WH_EINVAL (a real number, invalid UTF-8) or WH_ENOMEM. */
int wh_jcs_dump(const json_t *v, char **out, size_t *len);

/* hash = lowercase hex SHA-256(prev_hash_hex || JCS(row)); prev_hash_hex is
 * 64 hex characters (64 zeros before the first row). out needs 65 bytes.
 * Returns 0 or what wh_jcs_dump returns. */
int wh_jcs_chain_hash(const char *prev_hash_hex, const json_t *row, char out[65]);

#endif
