/* The HTTP server: libmicrohttpd driven from one libuv loop.
 *
 * The daemon runs with MHD_USE_EPOLL and no threads of its own: a uv_poll_t
 * watches its epoll fd and a uv_timer_t follows MHD_get_timeout, so every
 * callback (and so every handler) runs on the loop's thread. A handler gets a
 * request whose body has been read whole (at most WH_HTTP_BODY_MAX bytes;
 * larger bodies are answered 413 here and never reach it) and answers it with
 * wh_http_respond, either at once or later from any loop callback: until it
 * does, the connection is suspended. */
#ifndef WH_HTTP_H
#define WH_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#define WH_HTTP_BODY_MAX (64 * 1024)

typedef struct wh_http_s wh_http_t;
typedef struct wh_http_req_s wh_http_req_t;

/* Called once per request, with its whole body. */
typedef void (*wh_http_handler)(wh_http_req_t *req, void *arg);

/* What is logged of one finished request. */
typedef struct {
    const char *method;
    const char *path; /* without the query string */
    int status;       /* 0 when the connection closed before an answer */
    double ms;        /* from the first header to the answer's completion */
    const char *org;  /* "-" when unauthenticated */
} wh_http_log_t;
typedef void (*wh_http_logger)(const wh_http_log_t *entry, void *arg);

typedef struct {
    uv_loop_t *loop;
    const char *host; /* an IPv4 or IPv6 literal */
    int port;         /* 0: any free port (see wh_http_port) */
    bool ipv6;
    wh_http_handler handler;
    void *handler_arg;
    wh_http_logger logger; /* NULL: no log */
    void *logger_arg;
} wh_http_options_t;

/* Binds and starts serving on opt->loop. Returns 0, WH_EIO (cannot bind:
 * err_msg says why) or WH_ENOMEM. */
int wh_http_new(const wh_http_options_t *opt, wh_http_t **out, char *err_msg, size_t errlen);
/* The port actually bound. */
int wh_http_port(const wh_http_t *h);
/* Stops accepting connections. Requests already on their way are still
 * handled; their answers close their connections. */
void wh_http_quiesce(wh_http_t *h);
/* Requests received or being received and not yet fully answered. */
size_t wh_http_inflight(const wh_http_t *h);
/* Sends the answers given since the daemon last ran (wh_http_respond) now
 * rather than at the loop's next turn. Accepts NULL. */
void wh_http_flush(wh_http_t *h);
/* Answers every request still waiting with 503, stops the daemon and closes
 * the loop handles; the server is freed by their close callbacks. Accepts
 * NULL. */
void wh_http_free(wh_http_t *h);

/* ---- one request (valid from the handler call until it is answered) ---- */

const char *wh_http_method(const wh_http_req_t *r);
const char *wh_http_path(const wh_http_req_t *r);
/* A request header, or NULL when absent or when its value holds a NUL byte. */
const char *wh_http_header(const wh_http_req_t *r, const char *name);
/* A query parameter (decoded), or NULL. */
const char *wh_http_query(const wh_http_req_t *r, const char *name);
/* A query parameter that holds a time (RFC 3339 or a date), or NULL. Query
 * decoding turns a '+' that was not percent-encoded into a space, so a space
 * before a trailing "HH:MM" offset is read back as '+'. The result is in buf
 * when it had to be changed (buf: 64 bytes); a longer value is returned as
 * it is, for the caller's parser to refuse. */
const char *wh_http_query_time(const wh_http_req_t *r, const char *name, char buf[64]);
/* Calls fn for each query parameter in order until it returns false. */
void wh_http_query_each(const wh_http_req_t *r, bool (*fn)(const char *key, void *arg), void *arg);
const char *wh_http_body(const wh_http_req_t *r, size_t *len);
/* Names the org the request was made as, for the log (copied). */
void wh_http_set_org(wh_http_req_t *r, const char *org);

/* Answers the request: headers is NULL or name, value, …, NULL; body is
 * copied. Returns 0 or WH_ENOMEM (the connection is then closed). After this
 * the request must not be used. */
int wh_http_respond(wh_http_req_t *r, int status, const char *const *headers, const char *body,
                    size_t len);

#endif
