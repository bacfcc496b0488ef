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

#endif
