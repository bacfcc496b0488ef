/* The shared integration-test harness (see harness.h). */
#include "harness.h"

#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <errno.h>
#include <microhttpd.h>
#include <openssl/evp.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
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

/* "whsec_" + base64 of key. */
static void whsec(const char *key, char *out)
{
    memcpy(out, "whsec_", 6);
    EVP_EncodeBlock((unsigned char *)out + 6, (const unsigned char *)key, (int)strlen(key));
}

static void write_city(const char *const *workflows, const char *extra, bool hooks)
{
    static const char *const only[] = { "workflows/street-whistle.yaml", NULL };
    char path[600], src[600], text[4096], wf[300], fire[200] = "", housing[200] = "";
    char secret[80];

    if (hooks) {
        whsec(WH_TEST_FIRE_KEY, secret);
        snprintf(fire, sizeof(fire),
                 ", webhook: { url: 'http://127.0.0.1:%d/hooks/fire', secret: '%s' }",
                 wh_test_receiver_port(), secret);
        whsec(WH_TEST_HOUSING_KEY, secret);
        snprintf(housing, sizeof(housing),
                 ", webhook: { url: 'http://127.0.0.1:%d/hooks/housing', secret: '%s' }",
                 wh_test_receiver_port(), secret);
    }

    snprintf(wf, sizeof(wf), "%s/workflows", wh_test_dir);
    cr_assert_eq(mkdir(wf, 0755), 0);
    for (const char *const *w = workflows ? workflows : only; *w != NULL; w++) {
        const char *base = strrchr(*w, '/');
        snprintf(path, sizeof(path), "%s/%s", wf, base ? base + 1 : *w);
        snprintf(src, sizeof(src), "%s/%s", WH_SOURCE_DIR, *w);
        cr_assert_eq(symlink(src, path), 0, "%s", path);
    }
    /* A copy of the shipped calendar, which a test may edit and reload. */
    char cp[1400];
    snprintf(cp, sizeof(cp), "cp '%s/examples/calendars/cn.yaml' '%s/workdays.yaml'", WH_SOURCE_DIR,
             wh_test_dir);
    cr_assert_eq(system(cp), 0);
    snprintf(text, sizeof(text),
             "listen: 127.0.0.1:8080\n"
             "database: %s/var/whistle.db\n"
             "workflows: %s\n"
             "timezone: Asia/Shanghai\n"
             "calendars:\n"
             "  workdays: %s/workdays.yaml\n"
             "%s"
             "orgs:\n"
             "  - { id: xintan-street, name: 新滩, kind: street, token: tok-xintan }\n"
             "  - { id: beita-street, name: 北塔街道, kind: street, token: tok-beita }\n"
             "  - { id: fire-brigade, name: 消防, kind: department, parent: beita-district, "
             "token: tok-fire%s }\n"
             "  - { id: housing-bureau, name: 住建, kind: department, parent: beita-district, "
             "token: tok-housing%s }\n"
             "  - { id: development-reform, name: 发改, kind: department, parent: "
             "beita-district, token: tok-dev }\n"
             "  - { id: market-regulation, name: 市场, kind: department, parent: "
             "beita-district, token: tok-market }\n"
             "  - { id: beita-district, name: 北塔区, kind: district, parent: "
             "city-joint-meeting, token: tok-district }\n"
             "  - { id: city-joint-meeting, name: 联席会议, kind: joint-meeting, token: "
             "tok-joint }\n"
             "  - { id: city-supervision, name: 督查室, kind: supervisor, token: tok-super }\n",
             wh_test_dir, wf, wh_test_dir, extra != NULL ? extra : "", fire, housing);
    snprintf(path, sizeof(path), "%s/whistle.yaml", wh_test_dir);
    wh_test_write_file(path, text);
}

void wh_test_write_city(const char *const *workflows, const char *extra)
{
    write_city(workflows, extra, false);
}

void wh_test_write_hooked_city(const char *extra)
{
    write_city(NULL, extra, true);
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

/* ---- the sink ---- */

#define SINK_HEAD_MAX (16 * 1024)
#define SINK_BODY_MAX (256 * 1024)

typedef struct {
    char id[128];
    char *body; /* the first body read with this id */
    int times, acked;
} sink_entry_t;

static struct {
    pthread_mutex_t mu;
    pthread_t acceptor;
    int fd, port;
    atomic_bool stop;
    atomic_int open; /* connection threads alive */
    wh_test_sink_mode_t mode;
    int delay_ms;
    sink_entry_t *e;
    size_t n, cap;
    int requests, answered, conflicts;
} sk = { .mu = PTHREAD_MUTEX_INITIALIZER, .fd = -1 };

/* Waits up to 50 ms for fd to be readable; -1 when the sink stops. */
static int sink_wait(int fd)
{
    struct pollfd p = { .fd = fd, .events = POLLIN };
    while (!atomic_load(&sk.stop)) {
        int n = poll(&p, 1, 50);
        if (n > 0)
            return 0;
        if (n < 0 && errno != EINTR)
            return -1;
    }
    return -1;
}

/* Sleeps ms in small steps; false when the sink stops meanwhile. */
static bool sink_sleep(int ms)
{
    for (int i = 0; i < ms / 10 && !atomic_load(&sk.stop); i++)
        usleep(10000);
    return !atomic_load(&sk.stop);
}

/* The value of header name in the head (NUL-terminated), copied to out. */
static void sink_header(const char *head, const char *name, char *out, size_t len)
{
    size_t k = strlen(name);
    out[0] = '\0';
    for (const char *p = strstr(head, "\r\n"); p != NULL; p = strstr(p + 2, "\r\n")) {
        if (strncasecmp(p + 2, name, k) == 0 && p[2 + k] == ':') {
            const char *v = p + 3 + k, *end;
            while (*v == ' ')
                v++;
            end = strstr(v, "\r\n");
            snprintf(out, len, "%.*s", (int)(end ? end - v : (ptrdiff_t)strlen(v)), v);
            return;
        }
    }
}

static sink_entry_t *sink_find(const char *id)
{
    for (size_t i = 0; i < sk.n; i++)
        if (strcmp(sk.e[i].id, id) == 0)
            return &sk.e[i];
    return NULL;
}

/* Records one request read in full (under the lock). */
static void sink_record(const char *id, const char *body, size_t len)
{
    sink_entry_t *e;
    pthread_mutex_lock(&sk.mu);
    sk.requests++;
    e = sink_find(id);
    if (e == NULL) {
        if (sk.n == sk.cap) {
            size_t cap = sk.cap ? sk.cap * 2 : 256;
            sink_entry_t *grown = realloc(sk.e, cap * sizeof(*grown));
            if (grown == NULL)
                abort();
            sk.e = grown;
            sk.cap = cap;
        }
        e = &sk.e[sk.n++];
        memset(e, 0, sizeof(*e));
        snprintf(e->id, sizeof(e->id), "%s", id);
        e->body = strndup(body, len);
    } else if (strlen(e->body) != len || memcmp(e->body, body, len) != 0) {
        sk.conflicts++;
    }
    e->times++;
    pthread_mutex_unlock(&sk.mu);
}

static void sink_acked(const char *id)
{
    pthread_mutex_lock(&sk.mu);
    sink_entry_t *e = sink_find(id);
    sk.answered++;
    if (e != NULL)
        e->acked++;
    pthread_mutex_unlock(&sk.mu);
}

/* Reads one request: its head into head (NUL-terminated) and its body into
 * body (*blen bytes). -1 on EOF, an error or a stop. */
static int sink_read(int fd, char *head, char *body, size_t *blen)
{
    size_t h = 0, want, have;
    char *end = NULL, cl[32];
    while (end == NULL) {
        ssize_t k;
        if (h >= SINK_HEAD_MAX - 1 || sink_wait(fd) != 0)
            return -1;
        if ((k = read(fd, head + h, SINK_HEAD_MAX - 1 - h)) <= 0)
            return -1;
        h += (size_t)k;
        head[h] = '\0';
        end = strstr(head, "\r\n\r\n");
    }
    *end = '\0';
    have = h - (size_t)(end + 4 - head);
    sink_header(head, "content-length", cl, sizeof(cl));
    want = (size_t)strtoul(cl, NULL, 10);
    if (want > SINK_BODY_MAX || have > want)
        return -1;
    memcpy(body, end + 4, have);
    while (have < want) {
        ssize_t k;
        if (sink_wait(fd) != 0 || (k = read(fd, body + have, want - have)) <= 0)
            return -1;
        have += (size_t)k;
    }
    *blen = want;
    return 0;
}

static void *sink_conn(void *arg)
{
    int fd = (int)(intptr_t)arg;
    char *head = malloc(SINK_HEAD_MAX), *body = malloc(SINK_BODY_MAX), id[128];
    static const char ok[] = "HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n";
    size_t blen;
    while (head != NULL && body != NULL && sink_read(fd, head, body, &blen) == 0) {
        pthread_mutex_lock(&sk.mu);
        wh_test_sink_mode_t mode = sk.mode;
        int delay = sk.delay_ms;
        pthread_mutex_unlock(&sk.mu);
        sink_header(head, "webhook-id", id, sizeof(id));
        sink_record(id, body, blen);
        if (mode == WH_TEST_SINK_HANG) {
            while (sink_wait(fd) == 0 && read(fd, head, SINK_HEAD_MAX) > 0)
                ; /* drain until the client gives up or the sink stops */
            break;
        }
        if (mode == WH_TEST_SINK_RESET) {
            struct linger l = { .l_onoff = 1, .l_linger = 0 };
            setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof(l));
            break;
        }
        if (mode == WH_TEST_SINK_SLOW && !sink_sleep(delay))
            break;
        if (send(fd, ok, sizeof(ok) - 1, MSG_NOSIGNAL) != (ssize_t)sizeof(ok) - 1)
            break;
        sink_acked(id);
    }
    close(fd);
    free(head);
    free(body);
    atomic_fetch_sub(&sk.open, 1);
    return NULL;
}

static void *sink_accept(void *arg)
{
    (void)arg;
    while (sink_wait(sk.fd) == 0) {
        int c = accept(sk.fd, NULL, NULL);
        pthread_t t;
        if (c < 0)
            continue;
        atomic_fetch_add(&sk.open, 1);
        if (pthread_create(&t, NULL, sink_conn, (void *)(intptr_t)c) != 0) {
            close(c);
            atomic_fetch_sub(&sk.open, 1);
            continue;
        }
        pthread_detach(t);
    }
    return NULL;
}

void wh_test_sink_start(void)
{
    struct sockaddr_in a = { .sin_family = AF_INET };
    socklen_t alen = sizeof(a);
    int one = 1;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons((uint16_t)sk.port);
    sk.fd = socket(AF_INET, SOCK_STREAM, 0);
    cr_assert_geq(sk.fd, 0);
    setsockopt(sk.fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    cr_assert_eq(bind(sk.fd, (struct sockaddr *)&a, sizeof(a)), 0, "sink port %d: %s", sk.port,
                 strerror(errno));
    cr_assert_eq(listen(sk.fd, 128), 0);
    getsockname(sk.fd, (struct sockaddr *)&a, &alen);
    sk.port = ntohs(a.sin_port);
    atomic_store(&sk.stop, false);
    cr_assert_eq(pthread_create(&sk.acceptor, NULL, sink_accept, NULL), 0);
}

void wh_test_sink_stop(void)
{
    if (sk.fd < 0)
        return;
    atomic_store(&sk.stop, true);
    pthread_join(sk.acceptor, NULL);
    close(sk.fd);
    sk.fd = -1;
    for (int i = 0; i < 500 && atomic_load(&sk.open) > 0; i++)
        usleep(10000);
}

void wh_test_sink_reset(void)
{
    pthread_mutex_lock(&sk.mu);
    for (size_t i = 0; i < sk.n; i++)
        free(sk.e[i].body);
    free(sk.e);
    sk.e = NULL;
    sk.n = sk.cap = 0;
    sk.port = 0;
    sk.requests = sk.answered = sk.conflicts = 0;
    sk.mode = WH_TEST_SINK_OK;
    sk.delay_ms = 0;
    pthread_mutex_unlock(&sk.mu);
}

int wh_test_sink_port(void)
{
    return sk.port;
}

void wh_test_sink_mode(wh_test_sink_mode_t mode, int delay_ms)
{
    pthread_mutex_lock(&sk.mu);
    sk.mode = mode;
    sk.delay_ms = delay_ms;
    pthread_mutex_unlock(&sk.mu);
}

/* One counter read under the lock. */
static int sink_get(const int *field)
{
    pthread_mutex_lock(&sk.mu);
    int v = *field;
    pthread_mutex_unlock(&sk.mu);
    return v;
}

int wh_test_sink_requests(void)
{
    return sink_get(&sk.requests);
}

int wh_test_sink_answered(void)
{
    return sink_get(&sk.answered);
}

int wh_test_sink_conflicts(void)
{
    return sink_get(&sk.conflicts);
}

int wh_test_sink_ids(void)
{
    pthread_mutex_lock(&sk.mu);
    int n = (int)sk.n;
    pthread_mutex_unlock(&sk.mu);
    return n;
}

int wh_test_sink_open(void)
{
    return atomic_load(&sk.open);
}

int wh_test_sink_times(const char *id)
{
    pthread_mutex_lock(&sk.mu);
    sink_entry_t *e = sink_find(id);
    int n = e ? e->times : 0;
    pthread_mutex_unlock(&sk.mu);
    return n;
}

int wh_test_sink_acked(const char *id)
{
    pthread_mutex_lock(&sk.mu);
    sink_entry_t *e = sink_find(id);
    int n = e ? e->acked : 0;
    pthread_mutex_unlock(&sk.mu);
    return n;
}

const char *wh_test_sink_body(const char *id)
{
    pthread_mutex_lock(&sk.mu);
    sink_entry_t *e = sink_find(id);
    const char *b = e ? e->body : NULL;
    pthread_mutex_unlock(&sk.mu);
    return b;
}

/* ---- more about the daemon ---- */

int wh_test_verify(void)
{
    char cmd[1200];
    snprintf(cmd, sizeof(cmd), "'%s' verify -c '%s/whistle.yaml' >>'%s/verify.log' 2>&1", WH_BINARY,
             wh_test_dir, wh_test_dir);
    int st = system(cmd);
    return st != -1 && WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

wh_test_resp_t wh_test_try(const char *method, const char *path, const char *token,
                           const char *body, const char *const *extra, long timeout_ms)
{
    wh_test_resp_t r = { 0 };
    char url[1024], auth[128];
    struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/json");
    CURL *c = curl_easy_init();

    snprintf(url, sizeof(url), "http://127.0.0.1:%d%s", wh_test_port, path);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, wh_test_on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &r);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, &r);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, timeout_ms);
    if (token != NULL) {
        snprintf(auth, sizeof(auth), "Authorization: Bearer %s", token);
        h = curl_slist_append(h, auth);
    }
    for (size_t i = 0; extra != NULL && extra[i] != NULL; i++)
        h = curl_slist_append(h, extra[i]);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    if (body != NULL)
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
    if (curl_easy_perform(c) == CURLE_OK)
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r.status);
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    if (r.body != NULL)
        r.json = json_loadb(r.body, r.len, 0, NULL);
    return r;
}
