#include <curl/curl.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "engine/error.h"
#include "notifiers/webhook.h"

#define DEFAULT_TIMEOUT_MS   10000
#define DEFAULT_MAX_CONNS    8
#define DEFAULT_MAX_RESPONSE (64 * 1024)
#define MAX_HEADER_VALUE     256
#define MAX_HOST_KEY         200

typedef struct wh_webhook_s wh_webhook_t;

/* One socket curl asked us to watch. */
typedef struct sock_s {
    struct sock_s *next;
    uv_poll_t poll;
    curl_socket_t fd;
    wh_webhook_t *w;
} sock_t;

/* One attempt in flight. */
typedef struct xfer_s {
    struct xfer_s *next, *prev;
    wh_webhook_t *w;
    CURL *easy;
    struct curl_slist *headers;
    char *body;
    size_t received;
    bool capped;
    wh_notifier_cb cb;
    void *arg;
    char errbuf[CURL_ERROR_SIZE];
    char host[MAX_HOST_KEY]; /* scheme://host:port of the URL */
    uint64_t seq;            /* send order, for the per-host queue */
    bool started;            /* in the multi handle (else waiting for its host) */
} xfer_t;

struct wh_webhook_s {
    wh_notifier_t base; /* first: the engine sees only this */
    uv_loop_t *loop;
    CURLM *multi;
    uv_timer_t timer;
    sock_t *socks; /* watched sockets (closing ones are unlinked) */
    xfer_t *xfers;
    long timeout_ms;
    int max_conns; /* transfers started at once per host; the others wait here */
    uint64_t seq;
    size_t max_response;
    bool closing;
    int open_handles;
};

/* ---- signing ---- */

int wh_webhook_sign(const unsigned char *secret, size_t secret_len, const char *id, int64_t ts,
                    const char *body, size_t body_len, char *out)
{
    EVP_MAC *mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
    EVP_MAC_CTX *ctx = mac ? EVP_MAC_CTX_new(mac) : NULL;
    char digest_name[] = "SHA256", stamp[32];
    OSSL_PARAM params[] = { OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest_name, 0),
                            OSSL_PARAM_construct_end() };
    unsigned char md[EVP_MAX_MD_SIZE];
    size_t mdlen = 0;
    int n = snprintf(stamp, sizeof(stamp), "%lld", (long long)ts);
    int rc = WH_EINVAL;

    if (ctx == NULL) {
        rc = WH_ENOMEM;
        goto out;
    }
    if (EVP_MAC_init(ctx, secret, secret_len, params) != 1 ||
        EVP_MAC_update(ctx, (const unsigned char *)id, strlen(id)) != 1 ||
        EVP_MAC_update(ctx, (const unsigned char *)".", 1) != 1 ||
        EVP_MAC_update(ctx, (const unsigned char *)stamp, (size_t)n) != 1 ||
        EVP_MAC_update(ctx, (const unsigned char *)".", 1) != 1 ||
        EVP_MAC_update(ctx, (const unsigned char *)body, body_len) != 1 ||
        EVP_MAC_final(ctx, md, &mdlen, sizeof(md)) != 1 || mdlen != 32)
        goto out;
    memcpy(out, "v1,", 3);
    EVP_EncodeBlock((unsigned char *)out + 3, md, (int)mdlen); /* 44 chars and a NUL */
    rc = 0;
out:
    EVP_MAC_CTX_free(ctx);
    EVP_MAC_free(mac);
    return rc;
}

/* Whether one of the space-separated signatures in header is expected.
 * Every one is compared, in constant time, so the time does not show
 * which one matched or how much of it. */
static bool signature_matches(const char *header, const char *expected)
{
    size_t elen = strlen(expected);
    bool ok = false;
    const char *p = header, *end;

    while (*p != '\0') {
        while (*p == ' ')
            p++;
        for (end = p; *end != '\0' && *end != ' ';)
            end++;
        if ((size_t)(end - p) == elen && CRYPTO_memcmp(p, expected, elen) == 0)
            ok = true;
        p = end;
    }
    return ok;
}

bool wh_webhook_verify(const unsigned char *secret, size_t secret_len, const char *id, int64_t ts,
                       const char *body, size_t body_len, const char *header)
{
    char expected[WH_WEBHOOK_SIG_LEN];

    if (secret == NULL || id == NULL || header == NULL)
        return false;
    if (wh_webhook_sign(secret, secret_len, id, ts, body, body_len, expected) != 0)
        return false;
    return signature_matches(header, expected);
}

/* ---- sockets and the timer, as curl asks ---- */

static void sock_closed_cb(uv_handle_t *h)
{
    sock_t *sk = h->data;
    wh_webhook_t *w = sk->w;
    free(sk);
    if (--w->open_handles == 0 && w->closing)
        free(w);
}

/* Stops watching a socket before its fd goes away: libuv must never poll a
 * closed (or reused) descriptor. */
static void sock_drop(wh_webhook_t *w, sock_t *sk)
{
    for (sock_t **p = &w->socks; *p != NULL; p = &(*p)->next) {
        if (*p == sk) {
            *p = sk->next;
            uv_close((uv_handle_t *)&sk->poll, sock_closed_cb);
            return;
        }
    }
}

static void drain(wh_webhook_t *w);

static void on_poll(uv_poll_t *h, int status, int events)
{
    sock_t *sk = h->data;
    wh_webhook_t *w = sk->w;
    int flags = 0, running;

    if (status < 0)
        flags = CURL_CSELECT_ERR;
    if (events & UV_READABLE)
        flags |= CURL_CSELECT_IN;
    if (events & UV_WRITABLE)
        flags |= CURL_CSELECT_OUT;
    curl_multi_socket_action(w->multi, sk->fd, flags, &running);
    drain(w);
}

static int sock_cb(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp)
{
    wh_webhook_t *w = userp;
    sock_t *sk = socketp;
    int events = 0;

    (void)easy;
    if (what == CURL_POLL_REMOVE) {
        if (sk != NULL)
            sock_drop(w, sk);
        return 0;
    }
    if (sk == NULL) {
        if ((sk = calloc(1, sizeof(*sk))) == NULL)
            return -1;
        if (uv_poll_init_socket(w->loop, &sk->poll, fd) != 0) {
            free(sk);
            return -1;
        }
        sk->fd = fd;
        sk->w = w;
        sk->poll.data = sk;
        sk->next = w->socks;
        w->socks = sk;
        w->open_handles++;
        curl_multi_assign(w->multi, fd, sk);
    }
    if (what & CURL_POLL_IN)
        events |= UV_READABLE;
    if (what & CURL_POLL_OUT)
        events |= UV_WRITABLE;
    return uv_poll_start(&sk->poll, events, on_poll) == 0 ? 0 : -1;
}

static curl_socket_t open_cb(void *clientp, curlsocktype purpose, struct curl_sockaddr *addr)
{
    (void)clientp;
    (void)purpose;
    return socket(addr->family, addr->socktype, addr->protocol);
}

/* curl may close a socket without a CURL_POLL_REMOVE first (a cached
 * connection found dead): the poll stops here, before the fd is closed. */
static int close_cb(void *clientp, curl_socket_t fd)
{
    wh_webhook_t *w = clientp;
    for (sock_t *sk = w->socks; sk != NULL; sk = sk->next) {
        if (sk->fd == fd) {
            sock_drop(w, sk);
            break;
        }
    }
    return close(fd);
}

static void on_timeout(uv_timer_t *t)
{
    wh_webhook_t *w = t->data;
    int running;
    curl_multi_socket_action(w->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    drain(w);
}

/* curl wants one timer. A 0 ms timeout runs on the loop's next turn: never
 * call back into curl from inside its own callback. */
static int timer_cb(CURLM *multi, long timeout_ms, void *userp)
{
    wh_webhook_t *w = userp;
    (void)multi;
    if (w->closing)
        return 0;
    if (timeout_ms < 0)
        uv_timer_stop(&w->timer);
    else
        uv_timer_start(&w->timer, on_timeout, (uint64_t)timeout_ms, 0);
    return 0;
}

/* ---- transfers ---- */

/* The body is not needed: count it and drop the connection past the cap. */
static size_t write_cb(char *p, size_t size, size_t n, void *arg)
{
    xfer_t *x = arg;
    (void)p;
    x->received += size * n;
    if (x->received > x->w->max_response) {
        x->capped = true;
        return 0;
    }
    return size * n;
}

static void xfer_free(xfer_t *x)
{
    if (x->easy != NULL)
        curl_easy_cleanup(x->easy);
    curl_slist_free_all(x->headers);
    free(x->body);
    free(x);
}

static void xfer_unlink(wh_webhook_t *w, xfer_t *x)
{
    if (x->prev != NULL)
        x->prev->next = x->next;
    else
        w->xfers = x->next;
    if (x->next != NULL)
        x->next->prev = x->prev;
}

/* ---- the per-host queue ----
 *
 * libcurl counts the time a transfer waits for one of a host's
 * CURLMOPT_MAX_HOST_CONNECTIONS against its CURLOPT_TIMEOUT, so behind a
 * slow receiver queued messages would time out before they were sent and
 * spend their retries. Transfers beyond the limit wait here instead, in the
 * order they were sent, and their clock starts when they do. */

static void host_key(const char *url, char out[MAX_HOST_KEY])
{
    const char *p = strstr(url, "://");
    size_t n = p ? (size_t)(p - url) + 3 + strcspn(p + 3, "/?#") : strlen(url);
    snprintf(out, MAX_HOST_KEY, "%.*s", (int)(n < MAX_HOST_KEY ? n : MAX_HOST_KEY - 1), url);
}

static int host_active(const wh_webhook_t *w, const char *host)
{
    int n = 0;
    for (const xfer_t *x = w->xfers; x != NULL; x = x->next)
        n += x->started && strcmp(x->host, host) == 0;
    return n;
}

static int start(wh_webhook_t *w, xfer_t *x)
{
    if (curl_multi_add_handle(w->multi, x->easy) != CURLM_OK)
        return WH_ENOMEM;
    x->started = true;
    return 0;
}

/* Starts the oldest transfer waiting for host, if any. One that cannot be
 * started is answered as failed (and retried by the outbox). */
static void start_waiting(wh_webhook_t *w, const char *host)
{
    xfer_t *next = NULL;
    wh_notifier_result_t res = { .retry_after = -1, .error = "out of memory" };

    for (xfer_t *x = w->xfers; x != NULL; x = x->next)
        if (!x->started && strcmp(x->host, host) == 0 && (next == NULL || x->seq < next->seq))
            next = x;
    if (next == NULL || start(w, next) == 0)
        return;
    xfer_unlink(w, next);
    next->cb(&res, next->arg);
    xfer_free(next);
}

static void finish(wh_webhook_t *w, xfer_t *x, CURLcode code)
{
    wh_notifier_result_t res = { .retry_after = -1, .error = "" };
    long status = 0;
    curl_off_t total_us = 0, retry = 0;
    char error[CURL_ERROR_SIZE + 64];

    curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_getinfo(x->easy, CURLINFO_TOTAL_TIME_T, &total_us);
    curl_easy_getinfo(x->easy, CURLINFO_RETRY_AFTER, &retry);
    if (code == CURLE_WRITE_ERROR && x->capped && status > 0)
        code = CURLE_OK; /* a response too long to read is still an answer */
    res.status = code == CURLE_OK ? (int)status : 0;
    res.retry_after = retry > 0 ? (int64_t)retry : -1;
    res.latency_ms = (int64_t)(total_us / 1000);
    if (code != CURLE_OK) {
        snprintf(error, sizeof(error), x->errbuf[0] ? "%s (%s)" : "%s", curl_easy_strerror(code),
                 x->errbuf);
        res.error = error;
    }
    curl_multi_remove_handle(w->multi, x->easy);
    xfer_unlink(w, x);
    start_waiting(w, x->host);
    x->cb(&res, x->arg);
    xfer_free(x);
}

static void drain(wh_webhook_t *w)
{
    CURLMsg *m;
    int left;
    while ((m = curl_multi_info_read(w->multi, &left)) != NULL) {
        xfer_t *x = NULL;
        CURLcode code = m->data.result;
        if (m->msg != CURLMSG_DONE)
            continue;
        curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&x);
        if (x != NULL)
            finish(w, x, code);
    }
}

/* A header line "name: value"; values come from the engine, but a CR or LF
 * would let one forge further headers, so they are refused. */
static int add_header(xfer_t *x, const char *name, const char *value)
{
    char line[MAX_HEADER_VALUE + 32];
    struct curl_slist *l;
    if (strlen(value) > MAX_HEADER_VALUE || strpbrk(value, "\r\n") != NULL)
        return WH_EINVAL;
    snprintf(line, sizeof(line), "%s: %s", name, value);
    if ((l = curl_slist_append(x->headers, line)) == NULL)
        return WH_ENOMEM;
    x->headers = l;
    return 0;
}

static int sign_headers(xfer_t *x, const wh_notifier_msg_t *msg)
{
    char sig[WH_WEBHOOK_SIG_LEN], stamp[32];
    int64_t ts = (int64_t)time(NULL);
    int rc = wh_webhook_sign(msg->secret, msg->secret_len, msg->webhook_id, ts, msg->payload,
                             msg->payload_len, sig);
    struct curl_slist *l;

    snprintf(stamp, sizeof(stamp), "%lld", (long long)ts);
    if (rc == 0)
        rc = add_header(x, "webhook-id", msg->webhook_id);
    if (rc == 0)
        rc = add_header(x, "webhook-timestamp", stamp);
    if (rc == 0)
        rc = add_header(x, "webhook-signature", sig);
    if (rc == 0)
        rc = add_header(x, "Content-Type", "application/json");
    /* No "Expect: 100-continue" wait before large bodies. */
    if (rc == 0 && (l = curl_slist_append(x->headers, "Expect:")) == NULL)
        rc = WH_ENOMEM;
    else if (rc == 0)
        x->headers = l;
    return rc;
}

static int setup_easy(wh_webhook_t *w, xfer_t *x, const wh_notifier_msg_t *msg)
{
    CURL *c = x->easy;
    CURLcode rc = CURLE_OK;
#define SET(opt, val)   \
    if (rc == CURLE_OK) \
    rc = curl_easy_setopt(c, opt, val)
    SET(CURLOPT_URL, msg->url);
    SET(CURLOPT_PROTOCOLS_STR, "http,https");
    SET(CURLOPT_POST, 1L);
    SET(CURLOPT_POSTFIELDS, x->body);
    SET(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)msg->payload_len);
    SET(CURLOPT_HTTPHEADER, x->headers);
    SET(CURLOPT_USERAGENT, "whistle");
    SET(CURLOPT_TIMEOUT_MS, w->timeout_ms);
    SET(CURLOPT_FOLLOWLOCATION, 0L);
    SET(CURLOPT_NOSIGNAL, 1L);
    SET(CURLOPT_WRITEFUNCTION, write_cb);
    SET(CURLOPT_WRITEDATA, x);
    SET(CURLOPT_ERRORBUFFER, x->errbuf);
    SET(CURLOPT_PRIVATE, x);
    SET(CURLOPT_OPENSOCKETFUNCTION, open_cb);
    SET(CURLOPT_OPENSOCKETDATA, w);
    SET(CURLOPT_CLOSESOCKETFUNCTION, close_cb);
    SET(CURLOPT_CLOSESOCKETDATA, w);
#undef SET
    if (rc == CURLE_OUT_OF_MEMORY)
        return WH_ENOMEM;
    return rc == CURLE_OK ? 0 : WH_EINVAL;
}

static int webhook_send(wh_notifier_t *n, const wh_notifier_msg_t *msg, wh_notifier_cb cb,
                        void *arg)
{
    wh_webhook_t *w = (wh_webhook_t *)n;
    xfer_t *x;
    int rc;

    if (w->closing)
        return WH_ECLOSED;
    if ((x = calloc(1, sizeof(*x))) == NULL)
        return WH_ENOMEM;
    x->w = w;
    x->cb = cb;
    x->arg = arg;
    rc = WH_ENOMEM;
    if ((x->body = malloc(msg->payload_len + 1)) == NULL || (x->easy = curl_easy_init()) == NULL)
        goto out;
    memcpy(x->body, msg->payload, msg->payload_len);
    x->body[msg->payload_len] = '\0';
    if ((rc = sign_headers(x, msg)) != 0 || (rc = setup_easy(w, x, msg)) != 0)
        goto out;
    host_key(msg->url, x->host);
    x->seq = w->seq++;
    if (host_active(w, x->host) < w->max_conns && (rc = start(w, x)) != 0)
        goto out;
    x->next = w->xfers;
    if (w->xfers != NULL)
        w->xfers->prev = x;
    w->xfers = x;
    return 0;
out:
    xfer_free(x);
    return rc;
}

/* ---- lifetime ---- */

static void timer_closed_cb(uv_handle_t *h)
{
    wh_webhook_t *w = h->data;
    if (--w->open_handles == 0)
        free(w);
}

static void webhook_close(wh_notifier_t *n)
{
    wh_webhook_t *w = (wh_webhook_t *)n;
    wh_notifier_result_t res = { .error = "cancelled", .retry_after = -1, .cancelled = true };

    if (w == NULL || w->closing)
        return;
    w->closing = true;
    while (w->xfers != NULL) {
        xfer_t *x = w->xfers;
        if (x->started)
            curl_multi_remove_handle(w->multi, x->easy);
        xfer_unlink(w, x);
        x->cb(&res, x->arg);
        xfer_free(x);
    }
    /* Closes the cached connections, through close_cb for each socket. */
    curl_multi_cleanup(w->multi);
    w->multi = NULL;
    while (w->socks != NULL)
        sock_drop(w, w->socks);
    uv_timer_stop(&w->timer);
    uv_close((uv_handle_t *)&w->timer, timer_closed_cb);
    curl_global_cleanup();
}

static const wh_notifier_vtable_t webhook_vt = { webhook_send, webhook_close };

static int setup_multi(wh_webhook_t *w, int max_conns)
{
    CURLM *m = w->multi;
    CURLMcode rc = curl_multi_setopt(m, CURLMOPT_SOCKETFUNCTION, sock_cb);
    if (rc == CURLM_OK)
        rc = curl_multi_setopt(m, CURLMOPT_SOCKETDATA, w);
    if (rc == CURLM_OK)
        rc = curl_multi_setopt(m, CURLMOPT_TIMERFUNCTION, timer_cb);
    if (rc == CURLM_OK)
        rc = curl_multi_setopt(m, CURLMOPT_TIMERDATA, w);
    if (rc == CURLM_OK)
        rc = curl_multi_setopt(m, CURLMOPT_MAX_HOST_CONNECTIONS, (long)max_conns);
    return rc == CURLM_OK ? 0 : WH_EIO;
}

int wh_webhook_new(const wh_webhook_options_t *opt, wh_notifier_t **out)
{
    wh_webhook_t *w;
    int rc;

    *out = NULL;
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
        return WH_EIO;
    if ((w = calloc(1, sizeof(*w))) == NULL) {
        curl_global_cleanup();
        return WH_ENOMEM;
    }
    w->base.vt = &webhook_vt;
    w->loop = opt->loop;
    w->timeout_ms = opt->timeout_ms > 0 ? (long)opt->timeout_ms : DEFAULT_TIMEOUT_MS;
    w->max_response = opt->max_response_bytes ? opt->max_response_bytes : DEFAULT_MAX_RESPONSE;
    if ((w->multi = curl_multi_init()) == NULL) {
        rc = WH_ENOMEM;
        goto fail;
    }
    w->max_conns =
        opt->max_connections_per_host > 0 ? opt->max_connections_per_host : DEFAULT_MAX_CONNS;
    rc = setup_multi(w, w->max_conns);
    if (rc == 0 && uv_timer_init(opt->loop, &w->timer) != 0)
        rc = WH_EIO;
    if (rc != 0)
        goto fail;
    w->timer.data = w;
    w->open_handles = 1;
    *out = &w->base;
    return 0;
fail:
    curl_multi_cleanup(w->multi);
    free(w);
    curl_global_cleanup();
    return rc;
}
