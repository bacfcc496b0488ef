/* The webhook notifier (SPEC §5): one HTTP POST per attempt, signed the
 * Standard Webhooks way, on libcurl's multi interface driven by the
 * engine's libuv loop.
 *
 * One long-lived multi handle keeps connections alive between messages; at
 * most max_connections_per_host connections go to one host, transfers over
 * the cap wait their turn (and that wait counts against the timeout).
 * Redirects are not followed; the response body is read and discarded up to
 * max_response_bytes, after which the connection is dropped (the status
 * still counts). Everything runs on the loop's thread. */
#ifndef WH_WEBHOOK_H
#define WH_WEBHOOK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "notifiers/notifier.h"

typedef struct {
    uv_loop_t *loop;
    int64_t timeout_ms;           /* per attempt, queueing included; 0 = 10 s */
    int max_connections_per_host; /* 0 = 8 */
    size_t max_response_bytes;    /* 0 = 64 KiB */
} wh_webhook_options_t;

/* Creates the notifier on opt->loop. Close it with wh_notifier_close (which
 * cancels attempts in flight and frees it once its handles are closed).
 * Returns 0, WH_ENOMEM or WH_EIO (libcurl or libuv refused to start). */
int wh_webhook_new(const wh_webhook_options_t *opt, wh_notifier_t **out);

/* The signature header value "v1," + base64(HMAC-SHA256(secret,
 * id "." timestamp "." body)) into out (at least WH_WEBHOOK_SIG_LEN bytes).
 * Returns 0 or WH_ENOMEM / WH_EINVAL (OpenSSL refused). */
#define WH_WEBHOOK_SIG_LEN 64
int wh_webhook_sign(const unsigned char *secret, size_t secret_len, const char *id, int64_t ts,
                    const char *body, size_t body_len, char *out);

/* Standard Webhooks verification of an inbound request: whether header (the
 * webhook-signature value, space-separated "v1,<base64>" signatures) holds
 * the signature of id, ts and body under secret. Every signature in header
 * is compared in constant time. False too when OpenSSL fails or secret, id
 * or header is NULL. Checks neither the id's form nor the clock: the caller
 * does (SPEC §4). */
bool wh_webhook_verify(const unsigned char *secret, size_t secret_len, const char *id, int64_t ts,
                       const char *body, size_t body_len, const char *header);

#endif
