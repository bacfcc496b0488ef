/* The shared integration-test harness (see harness.h). */
#include "harness.h"

#include <criterion/criterion.h>
#include <microhttpd.h>
#include <pthread.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define FILE_MAX (1 << 20)

char wh_test_dir[256];
pid_t wh_test_pid = -1;
int wh_test_port;

/* ---- the directory and the daemon ---- */

void wh_test_dir_make(const char *prefix)
{
    snprintf(wh_test_dir, sizeof(wh_test_dir), "/tmp/%s-%d-XXXXXX", prefix, (int)getpid());
    cr_assert_not_null(mkdtemp(wh_test_dir));
    curl_global_init(CURL_GLOBAL_DEFAULT);
}

void wh_test_dir_remove(void)
{
    char cmd[300];
    curl_global_cleanup();
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", wh_test_dir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", wh_test_dir);
    wh_test_dir[0] = '\0';
}

void wh_test_write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f, "%s", path);
    fputs(text, f);
    fclose(f);
}

char *wh_test_read_file(const char *path)
{
    char *buf = calloc(1, FILE_MAX);
    FILE *f = fopen(path, "r");
    cr_assert_not_null(buf);
    if (f != NULL) {
        buf[fread(buf, 1, FILE_MAX - 1, f)] = '\0';
        fclose(f);
    }
    return buf;
}

char *wh_test_daemon_log(void)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/daemon.log", wh_test_dir);
    return wh_test_read_file(path);
}

/* Waits for the "listening on" line; the log was removed before the fork,
 * so an old daemon's line cannot be taken for the new one's. */
static int read_port(void)
{
    static const char mark[] = "whistle: listening on http://127.0.0.1:";
    for (int i = 0; i < 1500; i++) {
        char *buf = wh_test_daemon_log(), *p = strstr(buf, mark);
        int status;
        if (p != NULL) {
            int found = atoi(p + strlen(mark));
            free(buf);
            return found;
        }
        if (waitpid(wh_test_pid, &status, WNOHANG) == wh_test_pid) {
            wh_test_pid = -1;
            cr_assert_fail("the daemon exited before listening:\n%s", buf);
        }
        free(buf);
        usleep(10000);
    }
    cr_assert_fail("the daemon did not start listening");
    return -1;
}

void wh_test_daemon_start(void)
{
    char cfg[512], log[512];
    snprintf(cfg, sizeof(cfg), "%s/whistle.yaml", wh_test_dir);
    snprintf(log, sizeof(log), "%s/daemon.log", wh_test_dir);
    unlink(log);
    wh_test_pid = fork();
    cr_assert_neq(wh_test_pid, -1);
    if (wh_test_pid == 0) {
        FILE *f = freopen(log, "w", stderr);
        (void)f;
        execl(WH_BINARY, "whistle", "serve", "-c", cfg, "--listen", "127.0.0.1:0", (char *)NULL);
        _exit(127);
    }
    wh_test_port = read_port();
}

int wh_test_stop_pid(pid_t *pid, int sig)
{
    int status = 0;
    if (*pid <= 0)
        return 0;
    kill(*pid, sig);
    for (int i = 0; i < 1500; i++) {
        if (waitpid(*pid, &status, WNOHANG) == *pid) {
            *pid = -1;
            return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
        }
        usleep(10000);
    }
    kill(*pid, SIGKILL);
    waitpid(*pid, &status, 0);
    *pid = -1;
    return -1;
}

int wh_test_daemon_stop(int sig)
{
    return wh_test_stop_pid(&wh_test_pid, sig);
}

void wh_test_daemon_kill(void)
{
    int status;
    cr_assert_gt(wh_test_pid, 0);
    kill(wh_test_pid, SIGKILL);
    waitpid(wh_test_pid, &status, 0);
    wh_test_pid = -1;
}

void wh_test_finish(int rc)
{
    if (rc != 0) {
        char *log = wh_test_daemon_log();
        fprintf(stderr, "the daemon's log:\n%s\n", log);
        free(log);
    }
    wh_test_dir_remove();
    cr_assert_eq(rc, 0, "the daemon did not stop cleanly");
}

/* ---- the HTTP client ---- */

size_t wh_test_on_body(char *p, size_t size, size_t n, void *arg)
{
    wh_test_resp_t *r = arg;
    char *b = realloc(r->body, r->len + size * n + 1);
    cr_assert_not_null(b);
    memcpy(b + r->len, p, size * n);
    r->body = b;
    r->len += size * n;
    r->body[r->len] = '\0';
    return size * n;
}

static size_t on_header(char *p, size_t size, size_t n, void *arg)
{
    wh_test_resp_t *r = arg;
    size_t k = size * n;
    if (r->hlen + k < sizeof(r->headers)) {
        memcpy(r->headers + r->hlen, p, k);
        r->hlen += k;
        r->headers[r->hlen] = '\0';
    }
    return k;
}

void wh_test_resp_free(wh_test_resp_t *r)
{
    free(r->body);
    json_decref(r->json);
}

wh_test_resp_t wh_test_send(const char *method, const char *path, const char *token,
                            const char *type, const char *body, size_t len,
                            const char *const *extra)
{
    wh_test_resp_t r = { 0 };
    char url[1024], auth[128], ctype[128];
    struct curl_slist *h = NULL;
    CURL *c = curl_easy_init();

    snprintf(url, sizeof(url), "http://127.0.0.1:%d%s", wh_test_port, path);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, wh_test_on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &r);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, &r);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 30L);
    if (token != NULL) {
        snprintf(auth, sizeof(auth), "Authorization: Bearer %s", token);
        h = curl_slist_append(h, auth);
    }
    for (size_t i = 0; extra != NULL && extra[i] != NULL; i++)
        h = curl_slist_append(h, extra[i]);
    if (type != NULL) {
        snprintf(ctype, sizeof(ctype), "Content-Type: %s", type);
        h = curl_slist_append(h, ctype);
    }
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    if (body != NULL) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)len);
    }
    CURLcode rc = curl_easy_perform(c);
    cr_assert_eq(rc, CURLE_OK, "%s %s: %s", method, path, curl_easy_strerror(rc));
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r.status);
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    if (r.body != NULL)
        r.json = json_loadb(r.body, r.len, 0, NULL);
    return r;
}

wh_test_resp_t wh_test_request_len(const char *method, const char *path, const char *token,
                                   const char *body, size_t len, const char *const *extra)
{
    return wh_test_send(method, path, token, "application/json", body, len, extra);
}

wh_test_resp_t wh_test_request(const char *method, const char *path, const char *token,
                               const char *body)
{
    return wh_test_request_len(method, path, token, body, body ? strlen(body) : 0, NULL);
}

bool wh_test_has_header(const wh_test_resp_t *r, const char *line)
{
    for (const char *p = r->headers; (p = strchr(p, '\n')) != NULL; p++)
        if (strncasecmp(p + 1, line, strlen(line)) == 0)
            return true;
    return strncasecmp(r->headers, line, strlen(line)) == 0;
}

const char *wh_test_str(json_t *j, const char *key)
{
    return json_string_value(json_object_get(j, key));
}

/* ---- the receiver ---- */

static struct {
    struct MHD_Daemon *d;
    int port;
    pthread_mutex_t mu;
    int statuses[8]; /* answered in turn; the last one repeats */
    int nstatuses, next;
    int retry_after; /* > 0: sent with 429 and 503 */
    wh_test_seen_t seen[WH_TEST_MAX_SEEN];
    int nseen;
} rx = { .mu = PTHREAD_MUTEX_INITIALIZER };

typedef struct {
    char buf[16384];
    size_t len;
} upload_t;

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    (void)cls;
    (void)c;
    (void)toe;
    free(*con_cls);
    *con_cls = NULL;
}

static void header(struct MHD_Connection *c, const char *name, char *out, size_t len)
{
    const char *v = MHD_lookup_connection_value(c, MHD_HEADER_KIND, name);
    snprintf(out, len, "%s", v ? v : "");
}

/* Records a finished upload; returns the status to answer. */
static int record(struct MHD_Connection *c, const char *url, const upload_t *u)
{
    int status = 204;
    pthread_mutex_lock(&rx.mu);
    if (rx.nseen < WH_TEST_MAX_SEEN) {
        wh_test_seen_t *s = &rx.seen[rx.nseen++];
        struct timespec ts;
        snprintf(s->path, sizeof(s->path), "%s", url);
        header(c, "webhook-id", s->id, sizeof(s->id));
        header(c, "webhook-timestamp", s->stamp, sizeof(s->stamp));
        header(c, "webhook-signature", s->sig, sizeof(s->sig));
        memcpy(s->body, u->buf, u->len + 1);
        clock_gettime(CLOCK_MONOTONIC, &ts);
        s->at_ms = (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
    }
    if (rx.nstatuses > 0)
        status = rx.statuses[rx.next < rx.nstatuses - 1 ? rx.next++ : rx.nstatuses - 1];
    pthread_mutex_unlock(&rx.mu);
    return status;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version, const char *data,
                                  size_t *size, void **con_cls)
{
    upload_t *u = *con_cls;
    struct MHD_Response *r;
    enum MHD_Result ret;
    int status;
    (void)cls;
    (void)method;
    (void)version;
    if (u == NULL)
        return (*con_cls = calloc(1, sizeof(upload_t))) != NULL ? MHD_YES : MHD_NO;
    if (*size > 0) {
        size_t n = *size < sizeof(u->buf) - 1 - u->len ? *size : sizeof(u->buf) - 1 - u->len;
        memcpy(u->buf + u->len, data, n);
        u->len += n;
        *size = 0;
        return MHD_YES;
    }
    status = record(c, url, u);
    r = MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
    if ((status == 429 || status == 503) && rx.retry_after > 0) {
        char ra[16];
        snprintf(ra, sizeof(ra), "%d", rx.retry_after);
        MHD_add_response_header(r, "Retry-After", ra);
    }
    ret = MHD_queue_response(c, (unsigned)status, r);
    MHD_destroy_response(r);
    return ret;
}

void wh_test_receiver_reset(void)
{
    pthread_mutex_lock(&rx.mu);
    rx.port = 0;
    rx.nseen = rx.nstatuses = rx.next = rx.retry_after = 0;
    pthread_mutex_unlock(&rx.mu);
}

void wh_test_receiver_start(void)
{
    rx.d = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION,
                            (uint16_t)rx.port, NULL, NULL, on_request, NULL,
                            MHD_OPTION_NOTIFY_COMPLETED, on_completed, NULL,
                            MHD_OPTION_LISTENING_ADDRESS_REUSE, 1, MHD_OPTION_END);
    cr_assert_not_null(rx.d, "cannot start the receiver on port %d", rx.port);
    rx.port = MHD_get_daemon_info(rx.d, MHD_DAEMON_INFO_BIND_PORT)->port;
}

void wh_test_receiver_stop(void)
{
    if (rx.d != NULL)
        MHD_stop_daemon(rx.d);
    rx.d = NULL;
}

int wh_test_receiver_port(void)
{
    return rx.port;
}

void wh_test_receiver_answer(int n, const int *statuses)
{
    cr_assert(n > 0 && (size_t)n <= sizeof(rx.statuses) / sizeof(rx.statuses[0]));
    pthread_mutex_lock(&rx.mu);
    memcpy(rx.statuses, statuses, (size_t)n * sizeof(int));
    rx.nstatuses = n;
    rx.next = 0;
    pthread_mutex_unlock(&rx.mu);
}

void wh_test_receiver_retry_after(int seconds)
{
    rx.retry_after = seconds;
}

int wh_test_receiver_count(void)
{
    pthread_mutex_lock(&rx.mu);
    int n = rx.nseen;
    pthread_mutex_unlock(&rx.mu);
    return n;
}

void wh_test_receiver_wait(int n, int ms)
{
    for (int i = 0; i < ms / 10 && wh_test_receiver_count() < n; i++)
        usleep(10000);
    cr_assert_eq(wh_test_receiver_count(), n, "the receiver saw %d requests, not %d",
                 wh_test_receiver_count(), n);
}

const wh_test_seen_t *wh_test_receiver_seen(int i)
{
    cr_assert(i >= 0 && i < wh_test_receiver_count(), "request %d was not seen", i);
    return &rx.seen[i];
}

/* ---- the daemon's database ---- */

/* A value from the daemon's database (read-only, beside the running daemon). */
void wh_test_db_query(const char *sql, char *out, size_t len)
{
    char path[512];
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    snprintf(path, sizeof(path), "%s/var/whistle.db", wh_test_dir);
    out[0] = '\0';
    cr_assert_eq(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    sqlite3_busy_timeout(db, 2000);
    cr_assert_eq(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK, "%s", sqlite3_errmsg(db));
    if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_text(st, 0) != NULL)
        snprintf(out, len, "%s", (const char *)sqlite3_column_text(st, 0));
    sqlite3_finalize(st);
    sqlite3_close(db);
}

/* Waits up to ms for query to answer expect. */
void wh_test_db_wait(const char *sql, const char *expect, int ms)
{
    char got[512] = "";
    for (int i = 0; i < ms / 20; i++) {
        wh_test_db_query(sql, got, sizeof(got));
        if (strcmp(got, expect) == 0)
            return;
        usleep(20000);
    }
    cr_assert_str_eq(got, expect, "%s", sql);
}
