/* libFuzzer target: Standard Webhooks verification of inbound requests
 * (wh_webhook_verify, notifiers/webhook.c). The input gives a secret, a
 * webhook-id, a timestamp, a webhook-signature header and a body. Checked:
 * - the fuzzed header verifies exactly when one of its space-separated
 *   parts is the real signer's signature;
 * - a signature made by the real signer verifies, alone or among other
 *   signatures, and any one-byte change of it does not;
 * - another secret, another id, timestamp or body does not verify. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "fuzz/fuzz_util.h"
#include "notifiers/webhook.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef struct {
    char *secret, *id, *header;
    int64_t ts;
    const char *body;
    size_t body_len;
} sig_in_t;

/* Whether one space-separated part of header is sig (the reference). */
static bool header_has(const char *header, const char *sig)
{
    size_t n = strlen(sig);
    for (const char *p = header; *p != '\0';) {
        size_t k = strcspn(p, " ");
        if (k == n && memcmp(p, sig, n) == 0)
            return true;
        p += k;
        p += strspn(p, " ");
    }
    return false;
}

static bool verify(const sig_in_t *v, const char *secret, const char *header)
{
    return wh_webhook_verify((const unsigned char *)secret, strlen(secret), v->id, v->ts, v->body,
                             v->body_len, header);
}

static void check_mutants(const sig_in_t *v, const char *sig, uint8_t pick)
{
    char m[WH_WEBHOOK_SIG_LEN];
    size_t len = strlen(sig);

    for (size_t i = 0; i < len; i++) {
        memcpy(m, sig, len + 1);
        m[i] = (char)pick != sig[i] ? (char)pick : (char)(sig[i] ^ 1);
        /* A space splits the signature in two parts; neither is it. */
        FUZZ_CHECK(!verify(v, v->secret, m));
    }
}

static void check_real(const sig_in_t *v, uint8_t pick)
{
    char sig[WH_WEBHOOK_SIG_LEN], both[2 * WH_WEBHOOK_SIG_LEN + 8];
    size_t slen = strlen(v->secret);
    char *other = malloc(slen + 2);

    FUZZ_CHECK(wh_webhook_sign((const unsigned char *)v->secret, slen, v->id, v->ts, v->body,
                               v->body_len, sig) == 0);
    FUZZ_CHECK(strlen(sig) == 47 && strncmp(sig, "v1,", 3) == 0);
    FUZZ_CHECK(verify(v, v->secret, sig));
    snprintf(both, sizeof(both), " v1,bm90IGl0 %s  ", sig);
    FUZZ_CHECK(verify(v, v->secret, both));
    check_mutants(v, sig, pick);
    /* Another secret: one byte longer. */
    FUZZ_CHECK(other != NULL);
    snprintf(other, slen + 2, "%sx", v->secret);
    FUZZ_CHECK(!verify(v, other, sig));
    free(other);
    if (v->ts < INT64_MAX) {
        sig_in_t w = *v;
        w.ts++;
        FUZZ_CHECK(!verify(&w, v->secret, sig));
    }
    if (v->body_len > 0) {
        sig_in_t w = *v;
        w.body_len--;
        FUZZ_CHECK(!verify(&w, v->secret, sig));
    }
}

/* secret NUL id NUL header NUL ts(8 bytes) pick(1 byte) body. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_in_t in = { data, size };
    sig_in_t v = { 0 };
    char sig[WH_WEBHOOK_SIG_LEN];
    uint64_t ts = 0;
    uint8_t pick;

    v.secret = fuzz_field(&in);
    v.id = fuzz_field(&in);
    v.header = fuzz_field(&in);
    for (int i = 0; i < 8; i++)
        ts = ts << 8 | fuzz_byte(&in);
    v.ts = (int64_t)ts;
    pick = fuzz_byte(&in);
    v.body = (const char *)in.p;
    v.body_len = in.n;
    FUZZ_CHECK(v.secret != NULL && v.id != NULL && v.header != NULL);

    FUZZ_CHECK(wh_webhook_sign((const unsigned char *)v.secret, strlen(v.secret), v.id, v.ts,
                               v.body, v.body_len, sig) == 0);
    FUZZ_CHECK(verify(&v, v.secret, v.header) == header_has(v.header, sig));
    FUZZ_CHECK(!wh_webhook_verify(NULL, 0, v.id, v.ts, v.body, v.body_len, sig));
    check_real(&v, pick);

    free(v.secret);
    free(v.id);
    free(v.header);
    return 0;
}
