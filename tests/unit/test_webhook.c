/* The webhook notifier alone, against a tiny HTTP receiver (libmicrohttpd
 * in its own thread) on 127.0.0.1 and a free port. */
#include <criterion/criterion.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "engine/error.h"
#include "notifiers/webhook.h"

/* ---- the receiver ---- */

typedef struct {
    struct MHD_Daemon *d;
    int port;
    pthread_mutex_t mu;
    int connections, requests;
    int status;      /* what it answers */
    int delay_ms;    /* before answering */
    int retry_after; /* > 0: sends Retry-After */
    char id[128], stamp[32], sig[128], ctype[64], body[4096];
} receiver_t;

static receiver_t rx;

typedef struct {
    char buf[4096];
    size_t len;
} upload_t;

static void on_connection(void *cls, struct MHD_Connection *c, void **socket_context,
                          enum MHD_ConnectionNotificationCode code)
{
    (void)cls;
    (void)c;
    (void)socket_context;
    if (code == MHD_CONNECTION_NOTIFY_STARTED) {
        pthread_mutex_lock(&rx.mu);
        rx.connections++;
        pthread_mutex_unlock(&rx.mu);
    }
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    (void)cls;
    (void)c;
    (void)toe;
    free(*con_cls);
    *con_cls = NULL;
}

static void copy_header(struct MHD_Connection *c, const char *name, char *out, size_t len)
{
    const char *v = MHD_lookup_connection_value(c, MHD_HEADER_KIND, name);
    snprintf(out, len, "%s", v ? v : "");
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version, const char *data,
                                  size_t *size, void **con_cls)
{
    upload_t *u = *con_cls;
    struct MHD_Response *r;
    enum MHD_Result ret;
    char ra[16];
    (void)cls;
    (void)url;
    (void)method;
    (void)version;
    if (u == NULL) {
        *con_cls = calloc(1, sizeof(upload_t));
        return *con_cls ? MHD_YES : MHD_NO;
    }
    if (*size > 0) {
        size_t n = *size < sizeof(u->buf) - 1 - u->len ? *size : sizeof(u->buf) - 1 - u->len;
        memcpy(u->buf + u->len, data, n);
        u->len += n;
        *size = 0;
        return MHD_YES;
    }
    pthread_mutex_lock(&rx.mu);
    rx.requests++;
    copy_header(c, "webhook-id", rx.id, sizeof(rx.id));
    copy_header(c, "webhook-timestamp", rx.stamp, sizeof(rx.stamp));
    copy_header(c, "webhook-signature", rx.sig, sizeof(rx.sig));
    copy_header(c, "Content-Type", rx.ctype, sizeof(rx.ctype));
    memcpy(rx.body, u->buf, u->len + 1);
    int status = rx.status, delay = rx.delay_ms, retry = rx.retry_after;
    pthread_mutex_unlock(&rx.mu);
    if (delay > 0)
        usleep((useconds_t)delay * 1000);
    r = MHD_create_response_from_buffer(2, (void *)"ok", MHD_RESPMEM_PERSISTENT);
    if (retry > 0) {
        snprintf(ra, sizeof(ra), "%d", retry);
        MHD_add_response_header(r, "Retry-After", ra);
    }
    ret = MHD_queue_response(c, (unsigned)status, r);
    MHD_destroy_response(r);
    return ret;
}

static void receiver_start(void)
{
    memset(&rx, 0, sizeof(rx));
    pthread_mutex_init(&rx.mu, NULL);
    rx.status = 204;
    rx.d =
        MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION, 0, NULL,
                         NULL, on_request, NULL, MHD_OPTION_NOTIFY_CONNECTION, on_connection, NULL,
                         MHD_OPTION_NOTIFY_COMPLETED, on_completed, NULL, MHD_OPTION_END);
    cr_assert_not_null(rx.d);
    rx.port = MHD_get_daemon_info(rx.d, MHD_DAEMON_INFO_BIND_PORT)->port;
    cr_assert_gt(rx.port, 0);
}

static void receiver_stop(void)
{
    if (rx.d != NULL)
        MHD_stop_daemon(rx.d);
    rx.d = NULL;
    pthread_mutex_destroy(&rx.mu);
}

/* ---- the notifier on a loop ---- */

static uv_loop_t loop;
static wh_notifier_t *nt;
static const unsigned char secret[32] = "0123456789abcdef0123456789abcdef";

typedef struct {
    int done;
    int status;
    char error[512];
    int64_t retry_after, latency_ms;
    bool cancelled;
} outcome_t;

static void setup(void)
{
    wh_webhook_options_t opt = { .loop = &loop, .timeout_ms = 5000 };
    receiver_start();
    cr_assert_eq(uv_loop_init(&loop), 0);
    cr_assert_eq(wh_webhook_new(&opt, &nt), 0);
}

static void teardown(void)
{
    wh_notifier_close(nt);
    uv_run(&loop, UV_RUN_DEFAULT);
    cr_assert_eq(uv_loop_close(&loop), 0, "a loop handle was left open");
    receiver_stop();
}

TestSuite(webhook, .init = setup, .fini = teardown, .timeout = 30);

static void on_done(const wh_notifier_result_t *res, void *arg)
{
    outcome_t *o = arg;
    o->done++;
    o->status = res->status;
    snprintf(o->error, sizeof(o->error), "%s", res->error);
    o->retry_after = res->retry_after;
    o->latency_ms = res->latency_ms;
    o->cancelled = res->cancelled;
}

static char url[128];
static const char body[] = "{\"type\":\"ticket.whistled\",\"data\":{\"ticket\":{\"id\":\"T-1\"}}}";

static wh_notifier_msg_t message(const char *id, int port)
{
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/hooks/fire", port);
    return (wh_notifier_msg_t){ .outbox_id = 1,
                                .webhook_id = id,
                                .url = url,
                                .secret = secret,
                                .secret_len = sizeof(secret),
                                .payload = body,
                                .payload_len = strlen(body),
                                .attempt = 1 };
}

/* Runs the loop until *done reaches n (or 20 s pass). */
static void run_until(const int *done, int n)
{
    uint64_t end = uv_hrtime() + 20 * 1000000000ull;
    while (*done < n && uv_hrtime() < end)
        uv_run(&loop, UV_RUN_ONCE);
    cr_assert_eq(*done, n);
}

Test(webhook, posts_the_body_with_standard_webhooks_headers)
{
    outcome_t o = { 0 };
    wh_notifier_msg_t m = message("msg_T-1_1_0", rx.port);
    int64_t before = (int64_t)time(NULL);
    unsigned char mac[32];
    unsigned int maclen = 0;
    char signed_text[4096], expect[128] = "v1,";

    cr_assert_eq(wh_notifier_send(nt, &m, on_done, &o), 0);
    cr_assert_eq(o.done, 0, "the callback never runs inside send");
    run_until(&o.done, 1);
    cr_assert_eq(o.status, 204);
    cr_assert_str_eq(o.error, "");
    cr_assert_eq(o.retry_after, -1);
    cr_assert_not(o.cancelled);
    cr_assert_str_eq(rx.id, "msg_T-1_1_0");
    cr_assert_str_eq(rx.ctype, "application/json");
    cr_assert_str_eq(rx.body, body);
    int64_t ts = strtoll(rx.stamp, NULL, 10);
    cr_assert(ts >= before && ts <= (int64_t)time(NULL), "timestamp %s", rx.stamp);
    /* Recompute the signature independently: HMAC-SHA256 over id.ts.body. */
    snprintf(signed_text, sizeof(signed_text), "%s.%s.%s", rx.id, rx.stamp, body);
    HMAC(EVP_sha256(), secret, sizeof(secret), (const unsigned char *)signed_text,
         strlen(signed_text), mac, &maclen);
    cr_assert_eq(maclen, 32);
    EVP_EncodeBlock((unsigned char *)expect + 3, mac, 32);
    cr_assert_str_eq(rx.sig, expect);
}

Test(webhook, sign_matches_a_known_vector)
{
    /* The Standard Webhooks reference example: secret
     * whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw, id msg_p5jXN8AQM9LWM0D4loKWxJek,
     * timestamp 1614265330, body {"test": 2432232314}. */
    static const char b64[] = "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    unsigned char key[64];
    int n = EVP_DecodeBlock(key, (const unsigned char *)b64, (int)strlen(b64));
    char sig[WH_WEBHOOK_SIG_LEN];
    cr_assert_eq(n, 24);
    cr_assert_eq(wh_webhook_sign(key, 24, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330,
                                 "{\"test\": 2432232314}", 20, sig),
                 0);
    cr_assert_str_eq(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
}

static int chain_left;
static outcome_t chain_o;

static void on_chain(const wh_notifier_result_t *res, void *arg)
{
    on_done(res, &chain_o);
    cr_assert_eq(res->status, 204);
    if (--chain_left > 0) {
        wh_notifier_msg_t m = message((const char *)arg, rx.port);
        cr_assert_eq(wh_notifier_send(nt, &m, on_chain, arg), 0);
    }
}

Test(webhook, reuses_one_connection_for_twenty_messages)
{
    wh_notifier_msg_t m = message("msg_keepalive", rx.port);
    chain_left = 20;
    cr_assert_eq(wh_notifier_send(nt, &m, on_chain, (void *)"msg_keepalive"), 0);
    run_until(&chain_o.done, 20);
    cr_assert_eq(rx.requests, 20);
    cr_assert_eq(rx.connections, 1);
}

Test(webhook, passes_status_and_retry_after)
{
    outcome_t o = { 0 };
    wh_notifier_msg_t m = message("msg_busy", rx.port);
    rx.status = 503;
    rx.retry_after = 7;
    cr_assert_eq(wh_notifier_send(nt, &m, on_done, &o), 0);
    run_until(&o.done, 1);
    cr_assert_eq(o.status, 503);
    cr_assert_eq(o.retry_after, 7);
    cr_assert_str_eq(o.error, "");
}

Test(webhook, does_not_follow_redirects)
{
    outcome_t o = { 0 };
    wh_notifier_msg_t m = message("msg_moved", rx.port);
    rx.status = 302;
    cr_assert_eq(wh_notifier_send(nt, &m, on_done, &o), 0);
    run_until(&o.done, 1);
    cr_assert_eq(o.status, 302);
    cr_assert_eq(rx.requests, 1);
}

Test(webhook, refused_connection_has_no_status)
{
    outcome_t o = { 0 };
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t len = sizeof(a);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    /* A port that was free a moment ago and has no listener. */
    cr_assert_eq(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    cr_assert_eq(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    close(fd);
    wh_notifier_msg_t m = message("msg_refused", ntohs(a.sin_port));
    cr_assert_eq(wh_notifier_send(nt, &m, on_done, &o), 0);
    run_until(&o.done, 1);
    cr_assert_eq(o.status, 0);
    cr_assert_eq(strncmp(o.error, "Couldn't connect to server", 26), 0, "%s", o.error);
}

Test(webhook, refuses_other_schemes)
{
    outcome_t o = { 0 };
    wh_notifier_msg_t m = message("msg_file", rx.port);
    m.url = "file:///etc/passwd";
    cr_assert_eq(wh_notifier_send(nt, &m, on_done, &o), 0);
    run_until(&o.done, 1);
    cr_assert_eq(o.status, 0);
    cr_assert_eq(strncmp(o.error, "Unsupported protocol", 20), 0, "%s", o.error);
}

Test(webhook, refuses_header_injection)
{
    outcome_t o = { 0 };
    wh_notifier_msg_t m = message("msg_x\r\nX-Evil: 1", rx.port);
    cr_assert_eq(wh_notifier_send(nt, &m, on_done, &o), WH_EINVAL);
    uv_run(&loop, UV_RUN_NOWAIT);
    cr_assert_eq(o.done, 0);
}

Test(webhook, closing_cancels_attempts_in_flight)
{
    outcome_t o = { 0 };
    wh_notifier_msg_t m = message("msg_slow", rx.port);
    rx.delay_ms = 500;
    cr_assert_eq(wh_notifier_send(nt, &m, on_done, &o), 0);
    for (int i = 0; i < 5; i++)
        uv_run(&loop, UV_RUN_NOWAIT);
    wh_notifier_close(nt);
    nt = NULL;
    cr_assert_eq(o.done, 1);
    cr_assert(o.cancelled);
}

Test(webhook, times_out)
{
    outcome_t o = { 0 };
    wh_notifier_msg_t m = message("msg_timeout", rx.port);
    wh_webhook_options_t opt = { .loop = &loop, .timeout_ms = 300 };
    wh_notifier_close(nt);
    cr_assert_eq(wh_webhook_new(&opt, &nt), 0);
    rx.delay_ms = 1200;
    cr_assert_eq(wh_notifier_send(nt, &m, on_done, &o), 0);
    run_until(&o.done, 1);
    cr_assert_eq(o.status, 0);
    cr_assert_eq(strncmp(o.error, "Timeout was reached", 19), 0, "%s", o.error);
    cr_assert(o.latency_ms >= 250 && o.latency_ms < 1000, "latency %lld", (long long)o.latency_ms);
}

/* ---- wh_webhook_verify (inbound Standard Webhooks requests) ---- */

#define REF_ID   "msg_p5jXN8AQM9LWM0D4loKWxJek"
#define REF_TS   1614265330
#define REF_BODY "{\"test\": 2432232314}"
#define REF_SIG  "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="

static size_t ref_key(unsigned char key[64])
{
    static const char b64[] = "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    return (size_t)EVP_DecodeBlock(key, (const unsigned char *)b64, (int)strlen(b64));
}

static bool ref_verify(const char *header)
{
    unsigned char key[64];
    size_t n = ref_key(key);
    return wh_webhook_verify(key, n, REF_ID, REF_TS, REF_BODY, strlen(REF_BODY), header);
}

Test(webhook, verify_accepts_the_reference_signature)
{
    cr_assert(ref_verify(REF_SIG));
    /* Several signatures, space-separated (secret rotation), any order. */
    cr_assert(ref_verify("v1,bm90IGl0 " REF_SIG));
    cr_assert(ref_verify("  " REF_SIG "  v1,bm90IGl0"));
}

Test(webhook, verify_refuses_any_change)
{
    unsigned char key[64];
    size_t n = ref_key(key);
    char sig[] = REF_SIG;

    for (size_t i = 0; i < strlen(REF_SIG); i++) {
        sig[i] = (char)(REF_SIG[i] ^ 1);
        cr_assert_not(ref_verify(sig), "changed at %zu: %s", i, sig);
        sig[i] = REF_SIG[i];
    }
    cr_assert_not(ref_verify(""));
    cr_assert_not(ref_verify("v1,"));
    cr_assert_not(ref_verify(REF_SIG "x"));
    cr_assert_not(ref_verify("v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE"));
    cr_assert_not(ref_verify("v2,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="));
    cr_assert_not(
        wh_webhook_verify(key, n, REF_ID, REF_TS + 1, REF_BODY, strlen(REF_BODY), REF_SIG));
    cr_assert_not(
        wh_webhook_verify(key, n, "msg_other", REF_TS, REF_BODY, strlen(REF_BODY), REF_SIG));
    cr_assert_not(
        wh_webhook_verify(key, n, REF_ID, REF_TS, REF_BODY, strlen(REF_BODY) - 1, REF_SIG));
    cr_assert_not(
        wh_webhook_verify(key, n - 1, REF_ID, REF_TS, REF_BODY, strlen(REF_BODY), REF_SIG));
    cr_assert_not(wh_webhook_verify(NULL, 0, REF_ID, REF_TS, REF_BODY, strlen(REF_BODY), REF_SIG));
    cr_assert_not(wh_webhook_verify(key, n, REF_ID, REF_TS, REF_BODY, strlen(REF_BODY), NULL));
}
