/* The harness the integration tests share: a temporary directory, the real
 * daemon started from WH_BINARY on a free port, a libcurl client for its
 * API and a libmicrohttpd receiver that plays a department's webhook
 * endpoint. Every function asserts with Criterion, so a test that uses it
 * fails at the first thing that goes wrong. One daemon and one receiver per
 * test process: the tests run with --jobs 1. */
#ifndef WH_TEST_HARNESS_H
#define WH_TEST_HARNESS_H

#include <curl/curl.h>
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* ---- the directory and the daemon ---- */

/* The test's directory (empty before wh_test_dir_make), the daemon's pid
 * (-1 when none runs) and the port it listens on. */
extern char wh_test_dir[256];
extern pid_t wh_test_pid;
extern int wh_test_port;

/* Makes /tmp/<prefix>-<pid>-XXXXXX as wh_test_dir and initialises libcurl. */
void wh_test_dir_make(const char *prefix);

/* Removes wh_test_dir and everything in it, cleans libcurl up and empties
 * wh_test_dir. */
void wh_test_dir_remove(void);

/* Writes text to path (asserts it can). */
void wh_test_write_file(const char *path, const char *text);
/* Writes wh_test_dir/whistle.yaml for the test city: two street offices
 * (tok-xintan, tok-beita), four departments (tok-fire, tok-housing,
 * tok-dev, tok-market) under a district (tok-district), the joint meeting
 * (tok-joint) and a supervisor (tok-super); timezone Asia/Shanghai, a copy
 * of the shipped calendar as wh_test_dir/workdays.yaml. The workflows folder is
 * wh_test_dir/workflows, holding links to workflows (paths under WH_SOURCE_DIR, NULL-terminated;
 * NULL: the shipped street-whistle.yaml). extra (NULL or top-level YAML lines) goes before the
 * orgs. */
void wh_test_write_city(const char *const *workflows, const char *extra);

/* Keys (32 bytes, before base64) of the webhook secrets in
 * wh_test_write_hooked_city. */
#define WH_TEST_FIRE_KEY    "fire-brigade-secret-0123456789ab"
#define WH_TEST_HOUSING_KEY "housing-bureau-secret-0123456789"
/* wh_test_write_city (street-whistle only) with webhooks for fire-brigade
 * (/hooks/fire) and housing-bureau (/hooks/housing) on the test receiver,
 * which must be started first, signed with those keys. */
void wh_test_write_hooked_city(const char *extra);

/* The file's contents (at most 1 MiB, NUL-terminated); an empty string when
 * it cannot be read. The caller frees it. */
char *wh_test_read_file(const char *path);

/* The daemon's stderr (wh_test_dir/daemon.log), as wh_test_read_file. */
char *wh_test_daemon_log(void);

/* Starts `WH_BINARY serve -c wh_test_dir/whistle.yaml --listen 127.0.0.1:0`
 * with stderr in wh_test_dir/daemon.log, waits up to 15 s for its
 * "listening on" line and sets wh_test_pid and wh_test_port. Fails when the
 * daemon exits or does not listen in time. */
void wh_test_daemon_start(void);

/* Sends sig to *pid (when > 0) and waits up to 15 s, then SIGKILLs it; sets
 * *pid to -1. Returns the exit status, -1 when it died of a signal or had to
 * be killed, 0 when there was nothing to stop. */
int wh_test_stop_pid(pid_t *pid, int sig);

/* wh_test_stop_pid on the daemon. */
int wh_test_daemon_stop(int sig);

/* A crash: SIGKILL, nothing flushed or closed (asserts a daemon runs). */
void wh_test_daemon_kill(void);

/* The end of a test, given the daemon's exit status rc (from
 * wh_test_daemon_stop): prints the daemon's log when rc is not 0, removes
 * the directory, then asserts rc is 0, since a leak or a handle left open
 * makes the daemon exit non-zero. */
void wh_test_finish(int rc);

/* ---- the HTTP client ---- */

typedef struct {
    long status;
    char *body; /* NULL when the answer had none */
    size_t len;
    char headers[4096]; /* the header lines as received, capped */
    size_t hlen;
    json_t *json; /* body parsed, NULL when it is not JSON */
} wh_test_resp_t;

/* One request to the daemon: method on path (e.g. "/v1/tickets") with
 * "Authorization: Bearer token" when token is not NULL, the extra header
 * lines (NULL or NULL-terminated), "Content-Type: type" when type is not
 * NULL and len bytes of body when body is not NULL. Asserts the transfer
 * works; free the answer with wh_test_resp_free. */
wh_test_resp_t wh_test_send(const char *method, const char *path, const char *token,
                            const char *type, const char *body, size_t len,
                            const char *const *extra);

/* wh_test_send with type application/json. */
wh_test_resp_t wh_test_request_len(const char *method, const char *path, const char *token,
                                   const char *body, size_t len, const char *const *extra);

/* wh_test_request_len with body a string (or NULL) and no extra headers. */
wh_test_resp_t wh_test_request(const char *method, const char *path, const char *token,
                               const char *body);

void wh_test_resp_free(wh_test_resp_t *r);

/* A CURLOPT_WRITEFUNCTION appending to the wh_test_resp_t in
 * CURLOPT_WRITEDATA, for tests that drive libcurl themselves. */
size_t wh_test_on_body(char *p, size_t size, size_t n, void *arg);

/* Whether the answer has a header line starting with line (any case). */
bool wh_test_has_header(const wh_test_resp_t *r, const char *line);

/* json_string_value of j's key (NULL when absent). */
const char *wh_test_str(json_t *j, const char *key);

/* ---- the receiver ---- */

#define WH_TEST_MAX_SEEN 32

/* One request the receiver saw. */
typedef struct {
    char path[64], id[128], stamp[32], sig[128]; /* url and webhook-* headers */
    char body[16384];
    uint64_t at_ms; /* when it arrived (monotonic) */
} wh_test_seen_t;

/* Forgets the port, what was seen and the answers set: the next start takes
 * any free port and answers 204. */
void wh_test_receiver_reset(void);

/* Starts the receiver on its last port (any free one after a reset). */
void wh_test_receiver_start(void);

/* Stops it (nothing when it is not running); the port is kept. */
void wh_test_receiver_stop(void);

int wh_test_receiver_port(void);

/* The statuses answered in turn; the last one repeats. */
void wh_test_receiver_answer(int n, const int *statuses);

/* Seconds sent as Retry-After with 429 and 503 (0: none). */
void wh_test_receiver_retry_after(int seconds);

/* How many requests it saw (the first WH_TEST_MAX_SEEN are kept). */
int wh_test_receiver_count(void);

/* Waits up to ms for n requests, then asserts exactly n were seen. */
void wh_test_receiver_wait(int n, int ms);

/* The i-th request seen (i < wh_test_receiver_count()). */
const wh_test_seen_t *wh_test_receiver_seen(int i);

/* The first column of the first row sql returns from the daemon's database
 * (wh_test_dir/var/whistle.db, opened read-only beside the running daemon),
 * as text into out ("" when there is no row or it is NULL). */
void wh_test_db_query(const char *sql, char *out, size_t len);
/* Waits up to ms for wh_test_db_query(sql) to answer expect; fails the test
 * with the last answer otherwise. */
void wh_test_db_wait(const char *sql, const char *expect, int ms);

/* ---- the sink: a raw-socket webhook receiver that keeps every delivery ---- */

/* How the sink treats the requests it reads. The fault tests use it: unlike
 * the receiver above it keeps every request (not only the first
 * WH_TEST_MAX_SEEN) and can misbehave at the TCP level. */
typedef enum {
    WH_TEST_SINK_OK,    /* answers 204 at once (keep-alive) */
    WH_TEST_SINK_SLOW,  /* answers 204 after the delay set with the mode */
    WH_TEST_SINK_HANG,  /* reads the request, never answers, keeps the connection open */
    WH_TEST_SINK_RESET, /* reads the request, then resets the connection (SO_LINGER 0) */
} wh_test_sink_mode_t;

/* Starts the sink on 127.0.0.1 (a free port the first time, the same port
 * after a stop) in a thread of its own, one thread per connection. */
void wh_test_sink_start(void);

/* Stops it, closing every connection; what it recorded is kept. */
void wh_test_sink_stop(void);

/* Forgets the port and everything recorded (the sink must be stopped). */
void wh_test_sink_reset(void);

int wh_test_sink_port(void);

/* Sets how the next requests are treated; delay_ms is for WH_TEST_SINK_SLOW. */
void wh_test_sink_mode(wh_test_sink_mode_t mode, int delay_ms);

/* Requests read in full, and those answered 2xx (the answer written out). */
int wh_test_sink_requests(void);
int wh_test_sink_answered(void);

/* Distinct webhook-ids read; requests that repeated a webhook-id with a
 * different body (must stay 0); connections open now. */
int wh_test_sink_ids(void);
int wh_test_sink_conflicts(void);
int wh_test_sink_open(void);

/* How often a webhook-id was read, and answered 2xx (0 and 0: never seen). */
int wh_test_sink_times(const char *id);
int wh_test_sink_acked(const char *id);

/* The first body read for a webhook-id (NULL: never seen). Valid until the
 * next reset. */
const char *wh_test_sink_body(const char *id);

/* ---- more about the daemon ---- */

/* Runs `WH_BINARY verify -c wh_test_dir/whistle.yaml`, its output appended
 * to wh_test_dir/verify.log; returns its exit status (-1 on a signal). */
int wh_test_verify(void);

/* wh_test_send without asserting: out->status is 0 when the transfer
 * failed (refused, reset, timed out after timeout_ms). Free with
 * wh_test_resp_free. */
wh_test_resp_t wh_test_try(const char *method, const char *path, const char *token,
                           const char *body, const char *const *extra, long timeout_ms);

#endif
