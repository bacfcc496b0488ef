/* libmicrohttpd on the libuv loop (see http.h and notes/http-server.md). */
#include "src/http.h"

#include <arpa/inet.h>
#include <errno.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "engine/error.h"

/* Per-connection limits: generous for JSON requests, small enough that a
 * thousand idle connections cost little. The memory limit bounds the request
 * line and the headers together (MHD answers 414 or 431 past it). */
#define CONN_MEMORY_LIMIT (64 * 1024)
#define CONN_TIMEOUT_S    10
#define CONN_LIMIT        1000

/* MHD's timeout counts idle time only, so a client that trickles a byte a
 * second would hold its connection for ever. These bound the time a request
 * may take to arrive: its headers from the moment the connection opened (or
 * the previous answer went out), its body from the end of its headers. */
#define HEADER_DEADLINE_MS 10000
#define BODY_DEADLINE_MS   30000
#define SWEEP_MS           250

static const char too_large_body[] =
    "{\"error\":{\"code\":\"too_large\",\"message\":\"the request body is larger than 64 KiB\"}}";
static const char closing_body[] =
    "{\"error\":{\"code\":\"unavailable\",\"message\":\"the server is shutting down\"}}";

/* What a connection is waiting for, for the deadlines above. */
enum { WAIT_HEADERS, WAIT_BODY, ANSWERING };

/* One open connection (MHD's socket context). */
typedef struct conn_s {
    int fd;
    int phase;
    uint64_t since_ms; /* when the phase began */
    bool cut;          /* shut down for missing its deadline */
    struct conn_s *prev, *next;
} conn_t;

struct wh_http_req_s {
    wh_http_t *h;
    struct MHD_Connection *conn;
    char *method, *path;
    char *body;
    size_t len, cap;
    bool too_large;  /* over the cap: the rest is dropped, then 413 */
    bool in_handler; /* an answer given now is queued on return */
    bool suspended;
    struct MHD_Response *resp; /* the answer given inside the handler */
    int status;
    uint64_t start_ns;
    char org[64];
    wh_http_req_t *prev, *next; /* the suspended list */
};

struct wh_http_s {
    wh_http_options_t opt;
    struct MHD_Daemon *d;
    uv_poll_t poll;
    uv_timer_t timer;
    uv_timer_t sweep; /* enforces the request deadlines */
    int open_handles;
    int port;
    bool quiesced;
    bool stopping; /* the loop handles are closing */
    bool rerun;    /* a connection closed during MHD_run: run it again */
    bool kicked;   /* answers wait for the next MHD_run */
    size_t inflight;
    wh_http_req_t *suspended;
    conn_t *conns;
};

static void rearm(wh_http_t *h);

static void run_mhd(wh_http_t *h)
{
    h->kicked = false;
    MHD_run(h->d);
    rearm(h);
}

static void on_timer(uv_timer_t *t)
{
    run_mhd(t->data);
}

static void on_poll(uv_poll_t *p, int status, int events)
{
    (void)status;
    (void)events;
    run_mhd(p->data);
}

/* MHD keeps connections it has not drained on a ready list and then asks
 * for a zero timeout; the timer is what brings it back to them. */
static void rearm(wh_http_t *h)
{
    MHD_UNSIGNED_LONG_LONG ms = 0;
    if (h->rerun) {
        h->rerun = false;
        uv_timer_start(&h->timer, on_timer, 0, 0);
    } else if (MHD_get_timeout(h->d, &ms) == MHD_YES) {
        uv_timer_start(&h->timer, on_timer, (uint64_t)ms, 0);
    } else {
        uv_timer_stop(&h->timer);
    }
}

static void kick(wh_http_t *h)
{
    if (h->stopping)
        return;
    h->kicked = true;
    uv_timer_start(&h->timer, on_timer, 0, 0);
}

void wh_http_flush(wh_http_t *h)
{
    if (h != NULL && h->kicked && !h->stopping)
        run_mhd(h);
}

static void unlink_suspended(wh_http_req_t *r)
{
    if (!r->suspended)
        return;
    if (r->prev != NULL)
        r->prev->next = r->next;
    else
        r->h->suspended = r->next;
    if (r->next != NULL)
        r->next->prev = r->prev;
    r->prev = r->next = NULL;
    r->suspended = false;
}

static void req_free(wh_http_req_t *r)
{
    if (r == NULL)
        return;
    unlink_suspended(r);
    if (r->resp != NULL)
        MHD_destroy_response(r->resp);
    free(r->method);
    free(r->path);
    free(r->body);
    free(r);
}

static int hex_digit(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Decodes the %HH escapes of n bytes of src into dst (room for n + 1).
 * "%00" is never decoded: a NUL would cut the string short, so that
 * "/v1/tickets/T1%00junk" or "state=a%00b" would be read as something
 * the client did not send. In a path "%2F" is not decoded either: it is
 * part of a segment, not a separator. Malformed escapes stay as they are. */
static size_t decode(char *dst, const char *src, size_t n, bool path)
{
    size_t w = 0;
    for (size_t i = 0; i < n; i++) {
        int hi = src[i] == '%' && i + 2 < n ? hex_digit(src[i + 1]) : -1;
        int lo = hi >= 0 ? hex_digit(src[i + 2]) : -1;
        int c = lo >= 0 ? hi * 16 + lo : 0;
        if (c != 0 && !(path && c == '/')) {
            dst[w++] = (char)c;
            i += 2;
        } else {
            dst[w++] = src[i];
        }
    }
    dst[w] = '\0';
    return w;
}

/* MHD's unescaper for query keys and values ('+' is already a space). */
static size_t unescape_arg(void *cls, struct MHD_Connection *conn, char *s)
{
    (void)cls;
    (void)conn;
    return decode(s, s, strlen(s), false);
}

/* Made from the raw request line (see on_uri); the method is set when the
 * headers are complete. */
static wh_http_req_t *req_new(wh_http_t *h, struct MHD_Connection *conn, const char *uri)
{
    size_t n = strcspn(uri, "?");
    wh_http_req_t *r = calloc(1, sizeof(*r));
    if (r == NULL)
        return NULL;
    r->h = h;
    r->conn = conn;
    r->start_ns = uv_hrtime();
    snprintf(r->org, sizeof(r->org), "-");
    if ((r->path = malloc(n + 1)) == NULL) {
        req_free(r);
        return NULL;
    }
    decode(r->path, uri, n, true);
    return r;
}

/* MHD decodes the path before it calls the access handler, turning "%2F"
 * into a separator and "%00" into the end of the string; the request is
 * made here instead, from the raw request line, and its path decoded by
 * decode(). MHD hands the result to on_access as *con_cls and calls
 * on_completed for it even when the request never gets that far. */
static void *on_uri(void *cls, const char *uri, struct MHD_Connection *conn)
{
    return req_new(cls, conn, uri);
}

/* ---- connections and their deadlines ---- */

static uint64_t now_ms(void)
{
    return uv_hrtime() / 1000000;
}

static void conn_phase(struct MHD_Connection *conn, int phase)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    conn_t *k = ci != NULL ? ci->socket_context : NULL;
    if (k == NULL)
        return;
    k->phase = phase;
    k->since_ms = now_ms();
}

static void on_connection(void *cls, struct MHD_Connection *conn, void **ctx,
                          enum MHD_ConnectionNotificationCode what)
{
    wh_http_t *h = cls;
    conn_t *k = *ctx;
    const union MHD_ConnectionInfo *ci;

    if (what == MHD_CONNECTION_NOTIFY_STARTED) {
        ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
        /* Without memory the connection is left to MHD's idle timeout. */
        if (ci == NULL || (k = calloc(1, sizeof(*k))) == NULL)
            return;
        k->fd = ci->connect_fd;
        k->phase = WAIT_HEADERS;
        k->since_ms = now_ms();
        k->next = h->conns;
        if (h->conns != NULL)
            h->conns->prev = k;
        h->conns = k;
        *ctx = k;
        return;
    }
    /* At the connection limit MHD takes its listening socket out of its
     * epoll set and puts it back only in a later MHD_run; with no
     * connection left to wake the loop, that run would never come and the
     * server would stop accepting for good. So every close runs MHD again
     * (rearm, after the run in which it happened). */
    h->rerun = true;
    if (k == NULL)
        return;
    if (k->prev != NULL)
        k->prev->next = k->next;
    else
        h->conns = k->next;
    if (k->next != NULL)
        k->next->prev = k->prev;
    free(k);
    *ctx = NULL;
}

/* Cuts the connections whose request is late. shutdown(), not close(): the
 * descriptor stays MHD's, which reads the end of the stream and closes the
 * connection itself (a request already begun ends with status 0). */
static void on_sweep(uv_timer_t *t)
{
    wh_http_t *h = t->data;
    uint64_t now = now_ms();
    bool cut = false;

    for (conn_t *k = h->conns; k != NULL; k = k->next) {
        uint64_t limit = k->phase == WAIT_HEADERS ? HEADER_DEADLINE_MS : BODY_DEADLINE_MS;
        if (k->cut || k->phase == ANSWERING || now - k->since_ms < limit)
            continue;
        shutdown(k->fd, SHUT_RDWR);
        k->cut = cut = true;
    }
    if (cut)
        kick(h);
}

static struct MHD_Response *make_response(wh_http_t *h, const char *const *headers,
                                          const char *body, size_t len)
{
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(len, (void *)(uintptr_t)body, MHD_RESPMEM_MUST_COPY);
    if (resp == NULL)
        return NULL;
    for (size_t i = 0; headers != NULL && headers[i] != NULL && headers[i + 1] != NULL; i += 2)
        MHD_add_response_header(resp, headers[i], headers[i + 1]);
    /* While stopping, each connection serves the request it carries and
     * no more, so that the in-flight count can reach zero. */
    if (h->quiesced)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONNECTION, "close");
    return resp;
}

static const char *const json_headers[] = { "Content-Type", "application/json", NULL };

/* Answers at once from the access handler (413 and out-of-memory cases). */
static enum MHD_Result answer_now(wh_http_req_t *r, int status, const char *body)
{
    struct MHD_Response *resp = make_response(r->h, json_headers, body, strlen(body));
    enum MHD_Result ret;
    if (resp == NULL)
        return MHD_NO;
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONNECTION, "close");
    r->status = status;
    ret = MHD_queue_response(r->conn, (unsigned)status, resp);
    MHD_destroy_response(resp);
    return ret;
}

static bool declared_too_large(struct MHD_Connection *conn)
{
    const char *cl =
        MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
    char *end;
    unsigned long long n;
    if (cl == NULL)
        return false;
    errno = 0;
    n = strtoull(cl, &end, 10);
    return errno != 0 || n > WH_HTTP_BODY_MAX;
}

/* Appends upload data, dropping everything once the cap is passed. */
static bool take(wh_http_req_t *r, const char *data, size_t size)
{
    if (r->too_large)
        return true;
    if (size > WH_HTTP_BODY_MAX - r->len) {
        r->too_large = true;
        free(r->body);
        r->body = NULL;
        r->len = r->cap = 0;
        return true;
    }
    if (r->len + size + 1 > r->cap) {
        size_t cap = r->cap ? r->cap : 1024;
        while (cap < r->len + size + 1)
            cap *= 2;
        char *b = realloc(r->body, cap);
        if (b == NULL)
            return false;
        r->body = b;
        r->cap = cap;
    }
    memcpy(r->body + r->len, data, size);
    r->len += size;
    r->body[r->len] = '\0';
    return true;
}

static enum MHD_Result dispatch(wh_http_t *h, wh_http_req_t *r)
{
    enum MHD_Result ret;
    conn_phase(r->conn, ANSWERING);
    if (r->too_large)
        return answer_now(r, 413, too_large_body);
    r->in_handler = true;
    h->opt.handler(r, h->opt.handler_arg);
    r->in_handler = false;
    if (r->status != 0) {
        if (r->resp == NULL)
            return MHD_NO;
        ret = MHD_queue_response(r->conn, (unsigned)r->status, r->resp);
        MHD_destroy_response(r->resp);
        r->resp = NULL;
        return ret;
    }
    /* Answered later (after a commit): the connection waits suspended. */
    MHD_suspend_connection(r->conn);
    r->suspended = true;
    r->next = h->suspended;
    if (h->suspended != NULL)
        h->suspended->prev = r;
    h->suspended = r;
    return MHD_YES;
}

static enum MHD_Result on_access(void *cls, struct MHD_Connection *conn, const char *url,
                                 const char *method, const char *version, const char *data,
                                 size_t *size, void **con_cls)
{
    wh_http_t *h = cls;
    wh_http_req_t *r = *con_cls;
    (void)version;

    (void)url; /* decoded by MHD: r->path is used instead (see on_uri) */
    if (r == NULL)
        return MHD_NO; /* out of memory in on_uri */
    if (r->method == NULL) {
        /* The first call has the headers only; 0.9.75 drops keep-alive when
         * it is answered here, which is what an oversized body needs anyway
         * (the client is told before it uploads, or the rest is not read). */
        if ((r->method = strdup(method)) == NULL)
            return MHD_NO;
        h->inflight++;
        conn_phase(conn, WAIT_BODY);
        if (declared_too_large(conn)) {
            r->too_large = true;
            conn_phase(conn, ANSWERING);
            return answer_now(r, 413, too_large_body);
        }
        return MHD_YES;
    }
    if (*size != 0) {
        bool ok = take(r, data, *size);
        *size = 0;
        return ok ? MHD_YES : MHD_NO;
    }
    /* Called again after an answer only when queuing it failed: close. */
    if (r->status != 0)
        return MHD_NO;
    return dispatch(h, r);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    wh_http_t *h = cls;
    wh_http_req_t *r = *con_cls;
    (void)toe;
    if (r == NULL)
        return;
    *con_cls = NULL;
    /* The next request on this connection has its own header deadline. */
    conn_phase(conn, WAIT_HEADERS);
    /* A request line whose headers never came whole (431, a timeout)
     * reached no handler: nothing to log or count. */
    if (r->method == NULL) {
        req_free(r);
        return;
    }
    if (h->opt.logger != NULL) {
        wh_http_log_t entry = { .method = r->method,
                                .path = r->path,
                                .status = r->status,
                                .ms = (double)(uv_hrtime() - r->start_ns) / 1e6,
                                .org = r->org };
        h->opt.logger(&entry, h->opt.logger_arg);
    }
    h->inflight--;
    req_free(r);
}

static int make_addr(const wh_http_options_t *opt, struct sockaddr_storage *ss)
{
    memset(ss, 0, sizeof(*ss));
    if (opt->ipv6) {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)ss;
        a->sin6_family = AF_INET6;
        a->sin6_port = htons((uint16_t)opt->port);
        return inet_pton(AF_INET6, opt->host, &a->sin6_addr) == 1 ? 0 : WH_EINVAL;
    }
    struct sockaddr_in *a = (struct sockaddr_in *)ss;
    a->sin_family = AF_INET;
    a->sin_port = htons((uint16_t)opt->port);
    return inet_pton(AF_INET, opt->host, &a->sin_addr) == 1 ? 0 : WH_EINVAL;
}

static struct MHD_Daemon *start_daemon(wh_http_t *h, struct sockaddr_storage *ss)
{
    unsigned flags = MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME;
    if (h->opt.ipv6)
        flags |= MHD_USE_IPv6;
    return MHD_start_daemon(
        flags, 0, NULL, NULL, on_access, h, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)ss,
        MHD_OPTION_NOTIFY_COMPLETED, on_completed, h, MHD_OPTION_CONNECTION_MEMORY_LIMIT,
        (size_t)CONN_MEMORY_LIMIT, MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)CONN_TIMEOUT_S,
        MHD_OPTION_CONNECTION_LIMIT, (unsigned)CONN_LIMIT, MHD_OPTION_URI_LOG_CALLBACK, on_uri, h,
        MHD_OPTION_UNESCAPE_CALLBACK, unescape_arg, h, MHD_OPTION_NOTIFY_CONNECTION, on_connection,
        h, MHD_OPTION_END);
}

int wh_http_new(const wh_http_options_t *opt, wh_http_t **out, char *err, size_t errlen)
{
    struct sockaddr_storage ss;
    const union MHD_DaemonInfo *info;
    wh_http_t *h;

    *out = NULL;
    if (make_addr(opt, &ss) != 0) {
        snprintf(err, errlen, "'%s' is not an IP address", opt->host);
        return WH_EINVAL;
    }
    if ((h = calloc(1, sizeof(*h))) == NULL)
        return WH_ENOMEM;
    h->opt = *opt;
    h->d = start_daemon(h, &ss);
    if (h->d == NULL) {
        snprintf(err, errlen, "cannot listen on %s port %d", opt->host, opt->port);
        free(h);
        return WH_EIO;
    }
    info = MHD_get_daemon_info(h->d, MHD_DAEMON_INFO_BIND_PORT);
    h->port = info != NULL ? info->port : opt->port;
    info = MHD_get_daemon_info(h->d, MHD_DAEMON_INFO_EPOLL_FD);
    uv_poll_init(opt->loop, &h->poll, info->epoll_fd);
    uv_timer_init(opt->loop, &h->timer);
    uv_timer_init(opt->loop, &h->sweep);
    h->poll.data = h->timer.data = h->sweep.data = h;
    h->open_handles = 3;
    uv_poll_start(&h->poll, UV_READABLE, on_poll);
    uv_timer_start(&h->sweep, on_sweep, SWEEP_MS, SWEEP_MS);
    rearm(h);
    *out = h;
    return 0;
}

int wh_http_port(const wh_http_t *h)
{
    return h->port;
}

void wh_http_quiesce(wh_http_t *h)
{
    MHD_socket fd;
    if (h == NULL || h->quiesced)
        return;
    h->quiesced = true;
    fd = MHD_quiesce_daemon(h->d);
    if (fd != MHD_INVALID_SOCKET)
        close(fd);
    kick(h);
}

size_t wh_http_inflight(const wh_http_t *h)
{
    return h->inflight;
}

static void on_close(uv_handle_t *handle)
{
    wh_http_t *h = handle->data;
    if (--h->open_handles == 0)
        free(h);
}

void wh_http_free(wh_http_t *h)
{
    if (h == NULL)
        return;
    h->quiesced = true;
    /* Suspended connections never time out: each gets an answer before the
     * daemon goes, so that none is left hanging. */
    while (h->suspended != NULL)
        wh_http_respond(h->suspended, 503, json_headers, closing_body, strlen(closing_body));
    MHD_run(h->d);
    h->stopping = true;
    uv_poll_stop(&h->poll);
    uv_close((uv_handle_t *)&h->poll, on_close);
    uv_close((uv_handle_t *)&h->timer, on_close);
    uv_close((uv_handle_t *)&h->sweep, on_close);
    MHD_stop_daemon(h->d);
    h->d = NULL;
}

/* ---- one request ---- */

const char *wh_http_method(const wh_http_req_t *r)
{
    return r->method;
}

const char *wh_http_path(const wh_http_req_t *r)
{
    return r->path;
}

const char *wh_http_header(const wh_http_req_t *r, const char *name)
{
    const char *v = NULL;
    size_t n = 0;
    if (MHD_lookup_connection_value_n(r->conn, MHD_HEADER_KIND, name, strlen(name), &v, &n) !=
            MHD_YES ||
        v == NULL)
        return NULL;
    /* 0.9.75 lets a NUL byte through inside a header value. */
    return strlen(v) == n ? v : NULL;
}

const char *wh_http_query(const wh_http_req_t *r, const char *name)
{
    return MHD_lookup_connection_value(r->conn, MHD_GET_ARGUMENT_KIND, name);
}

const char *wh_http_query_time(const wh_http_req_t *r, const char *name, char buf[64])
{
    const char *s = wh_http_query(r, name);
    size_t n = s ? strlen(s) : 0;
    if (s == NULL || n >= 64 || n <= 6 || s[n - 6] != ' ')
        return s;
    memcpy(buf, s, n + 1);
    buf[n - 6] = '+';
    return buf;
}

typedef struct {
    bool (*fn)(const char *key, void *arg);
    void *arg;
} each_t;

static enum MHD_Result each_arg(void *cls, enum MHD_ValueKind kind, const char *key,
                                const char *value)
{
    each_t *e = cls;
    (void)kind;
    (void)value;
    return e->fn(key, e->arg) ? MHD_YES : MHD_NO;
}

void wh_http_query_each(const wh_http_req_t *r, bool (*fn)(const char *key, void *arg), void *arg)
{
    each_t e = { fn, arg };
    MHD_get_connection_values(r->conn, MHD_GET_ARGUMENT_KIND, each_arg, &e);
}

const char *wh_http_body(const wh_http_req_t *r, size_t *len)
{
    *len = r->len;
    return r->body != NULL ? r->body : "";
}

void wh_http_set_org(wh_http_req_t *r, const char *org)
{
    snprintf(r->org, sizeof(r->org), "%s", org != NULL ? org : "-");
}

int wh_http_respond(wh_http_req_t *r, int status, const char *const *headers, const char *body,
                    size_t len)
{
    wh_http_t *h = r->h;
    struct MHD_Response *resp = make_response(h, headers, body, len);
    int rc = resp != NULL ? 0 : WH_ENOMEM;

    r->status = status;
    if (r->in_handler) {
        r->resp = resp; /* queued when the handler returns (NULL: closed) */
        return rc;
    }
    if (resp != NULL) {
        MHD_queue_response(r->conn, (unsigned)status, resp);
        MHD_destroy_response(resp);
    }
    unlink_suspended(r);
    MHD_resume_connection(r->conn);
    kick(h);
    return rc;
}
