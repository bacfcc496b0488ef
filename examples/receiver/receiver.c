/* whistle-receiver: a department's end of whistle's webhooks (SPEC §5).
 *
 * It listens for whistle's messages on /hooks/<org>, checks each one the
 * Standard Webhooks way (any v1 signature, compared in constant time; a
 * timestamp within 5 minutes; each webhook-id once, remembered in memory),
 * answers 204 and logs one line per message. On ticket.whistled it reports
 * back (报到): a worker thread POSTs the configured event to
 * /v1/tickets/{id}/events, authenticated by a bearer token or signed with
 * the same secret (--sign).
 *
 *   whistle-receiver --org fire-brigade --secret whsec_... --token demo-fire-token
 */
#include <arpa/inet.h>
#include <curl/curl.h>
#include <errno.h>
#include <jansson.h>
#include <microhttpd.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <openssl/rand.h>
#include <pthread.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_BODY      (1024 * 1024) /* whistle's messages are far smaller */
#define MAX_SKEW      300           /* seconds a timestamp may be off */
#define SEEN_IDS      4096          /* webhook-ids remembered for dedup */
#define MAX_ID        256
#define MAX_QUEUE     256 /* callbacks waiting for the worker */
#define MAX_TICKET_ID 64

static struct {
    const char *listen, *org, *whistle, *token, *event;
    unsigned char key[256];
    int key_len;
    bool sign;
    char path[128]; /* "/hooks/<org>" */
} opt = { .listen = "127.0.0.1:9000", .whistle = "http://127.0.0.1:8080", .event = "report" };

/* The ids already accepted: a ring, so the oldest are forgotten first. */
static struct {
    pthread_mutex_t mu;
    char ids[SEEN_IDS][MAX_ID];
    int next;
} seen = { .mu = PTHREAD_MUTEX_INITIALIZER };

/* Tickets to report on, handed from the HTTP thread to the worker. */
static struct {
    pthread_mutex_t mu;
    pthread_cond_t cond;
    char ids[MAX_QUEUE][MAX_TICKET_ID];
    int head, len;
    bool stop;
} queue = { .mu = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER };

static void logf_line(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void logf_line(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("receiver: ", stdout);
    vfprintf(stdout, fmt, ap);
    fputc('\n', stdout);
    fflush(stdout);
    va_end(ap);
}

/* Decodes "whsec_<base64>" into opt.key; -1 when it is not one. */
static int decode_secret(const char *secret)
{
    size_t len;
    int n;
    if (secret == NULL || strncmp(secret, "whsec_", 6) != 0)
        return -1;
    secret += 6;
    len = strlen(secret);
    if (len == 0 || len % 4 != 0 || len / 4 * 3 > sizeof(opt.key))
        return -1;
    n = EVP_DecodeBlock(opt.key, (const unsigned char *)secret, (int)len);
    if (n < 0)
        return -1;
    /* EVP_DecodeBlock counts the padding as zero bytes; drop them. */
    for (size_t i = len; i > 0 && secret[i - 1] == '='; i--)
        n--;
    opt.key_len = n;
    return 0;
}

/* "v1," + base64(HMAC-SHA256(key, id "." ts "." body)) into out (>= 64). */
static int sign(const char *id, const char *ts, const char *body, size_t len, char *out)
{
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int mac_len = 0;
    EVP_MAC *mac_alg = EVP_MAC_fetch(NULL, "HMAC", NULL);
    EVP_MAC_CTX *ctx = mac_alg != NULL ? EVP_MAC_CTX_new(mac_alg) : NULL;
    OSSL_PARAM params[] = { OSSL_PARAM_construct_utf8_string("digest", (char *)"SHA256", 0),
                            OSSL_PARAM_construct_end() };
    size_t got = 0;
    int rc = -1;
    if (ctx == NULL || !EVP_MAC_init(ctx, opt.key, (size_t)opt.key_len, params))
        goto out;
    if (!EVP_MAC_update(ctx, (const unsigned char *)id, strlen(id)) ||
        !EVP_MAC_update(ctx, (const unsigned char *)".", 1) ||
        !EVP_MAC_update(ctx, (const unsigned char *)ts, strlen(ts)) ||
        !EVP_MAC_update(ctx, (const unsigned char *)".", 1) ||
        !EVP_MAC_update(ctx, (const unsigned char *)body, len) ||
        !EVP_MAC_final(ctx, mac, &got, sizeof(mac)))
        goto out;
    mac_len = (unsigned int)got;
    memcpy(out, "v1,", 3);
    EVP_EncodeBlock((unsigned char *)out + 3, mac, (int)mac_len);
    rc = 0;
out:
    EVP_MAC_CTX_free(ctx);
    EVP_MAC_free(mac_alg);
    return rc;
}

/* True when one of the space-separated signatures in header is ours. Every
 * candidate is compared in full, in constant time, so that the time taken
 * tells nothing about how much of a guess was right. */
static bool signature_ok(const char *header, const char *id, const char *ts, const char *body,
                         size_t len)
{
    char want[128];
    size_t want_len;
    bool ok = false;
    if (sign(id, ts, body, len, want) != 0)
        return false;
    want_len = strlen(want);
    for (const char *p = header; *p != '\0';) {
        size_t n = strcspn(p, " ");
        if (n == want_len && CRYPTO_memcmp(p, want, n) == 0)
            ok = true;
        p += n;
        p += strspn(p, " ");
    }
    return ok;
}

/* Records id; false when it was seen already (a redelivery). */
static bool first_time(const char *id)
{
    bool fresh = true;
    pthread_mutex_lock(&seen.mu);
    for (int i = 0; i < SEEN_IDS && fresh; i++)
        if (strcmp(seen.ids[i], id) == 0)
            fresh = false;
    if (fresh) {
        snprintf(seen.ids[seen.next], MAX_ID, "%s", id);
        seen.next = (seen.next + 1) % SEEN_IDS;
    }
    pthread_mutex_unlock(&seen.mu);
    return fresh;
}

static void enqueue(const char *ticket)
{
    pthread_mutex_lock(&queue.mu);
    if (queue.len < MAX_QUEUE) {
        snprintf(queue.ids[(queue.head + queue.len) % MAX_QUEUE], MAX_TICKET_ID, "%s", ticket);
        queue.len++;
        pthread_cond_signal(&queue.cond);
    } else {
        logf_line("queue full: not reporting on %s", ticket);
    }
    pthread_mutex_unlock(&queue.mu);
}

/* ---- the callback to whistle ---- */

typedef struct {
    char buf[65536];
    size_t len;
} resp_t;

static size_t on_resp(char *p, size_t size, size_t n, void *arg)
{
    resp_t *r = arg;
    size_t k = size * n, room = sizeof(r->buf) - 1 - r->len;
    memcpy(r->buf + r->len, p, k < room ? k : room);
    r->len += k < room ? k : room;
    r->buf[r->len] = '\0';
    return k;
}

/* A fresh id for a signed request: "in_" + 16 random bytes in hex. */
static void fresh_id(char *out)
{
    unsigned char raw[16];
    if (RAND_bytes(raw, sizeof(raw)) != 1)
        memset(raw, 0, sizeof(raw));
    strcpy(out, "in_");
    for (size_t i = 0; i < sizeof(raw); i++)
        sprintf(out + 3 + 2 * i, "%02x", raw[i]);
}

/* Adds the credentials: the bearer token, or the three signature headers. */
static struct curl_slist *credentials(struct curl_slist *h, const char *body)
{
    char line[512], id[64], ts[32], sig[128];
    if (!opt.sign) {
        snprintf(line, sizeof(line), "Authorization: Bearer %s", opt.token);
        return curl_slist_append(h, line);
    }
    fresh_id(id);
    snprintf(ts, sizeof(ts), "%lld", (long long)time(NULL));
    if (sign(id, ts, body, strlen(body), sig) != 0)
        return h;
    snprintf(line, sizeof(line), "webhook-id: %s", id);
    h = curl_slist_append(h, line);
    snprintf(line, sizeof(line), "webhook-timestamp: %s", ts);
    h = curl_slist_append(h, line);
    snprintf(line, sizeof(line), "webhook-signature: %s", sig);
    return curl_slist_append(h, line);
}

static void report(const char *ticket)
{
    char url[512], body[256], *esc;
    struct curl_slist *h = NULL;
    resp_t *r = calloc(1, sizeof(*r));
    CURL *c = curl_easy_init();
    long status = 0;
    json_t *j = NULL;
    CURLcode rc;
    if (r == NULL || c == NULL)
        goto out;
    esc = curl_easy_escape(c, ticket, 0);
    snprintf(url, sizeof(url), "%s/v1/tickets/%s/events", opt.whistle, esc ? esc : "");
    curl_free(esc);
    snprintf(body, sizeof(body), "{\"event\": \"%s\", \"note\": \"whistle-receiver of %s\"}",
             opt.event, opt.org);
    h = curl_slist_append(h, "Content-Type: application/json");
    h = credentials(h, body);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_resp);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, r);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 10L);
    rc = curl_easy_perform(c);
    if (rc != CURLE_OK) {
        logf_line("%s %s: %s", opt.event, ticket, curl_easy_strerror(rc));
        goto out;
    }
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    j = json_loads(r->buf, 0, NULL);
    if (status == 200)
        logf_line("%s %s -> 200, state %s", opt.event, ticket,
                  json_string_value(json_object_get(j, "state")));
    else
        logf_line("%s %s -> %ld %s", opt.event, ticket, status, r->buf);
out:
    json_decref(j);
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    free(r);
}

static void *worker(void *arg)
{
    char ticket[MAX_TICKET_ID];
    (void)arg;
    for (;;) {
        pthread_mutex_lock(&queue.mu);
        while (queue.len == 0 && !queue.stop)
            pthread_cond_wait(&queue.cond, &queue.mu);
        if (queue.len == 0) {
            pthread_mutex_unlock(&queue.mu);
            return NULL;
        }
        memcpy(ticket, queue.ids[queue.head], sizeof(ticket));
        queue.head = (queue.head + 1) % MAX_QUEUE;
        queue.len--;
        pthread_mutex_unlock(&queue.mu);
        report(ticket);
    }
}

/* ---- the HTTP side ---- */

typedef struct {
    char *buf;
    size_t len;
    bool too_big;
} upload_t;

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    upload_t *u = *con_cls;
    (void)cls;
    (void)c;
    (void)toe;
    if (u != NULL)
        free(u->buf);
    free(u);
    *con_cls = NULL;
}

static enum MHD_Result reply(struct MHD_Connection *c, unsigned status)
{
    struct MHD_Response *r = MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
    enum MHD_Result ret;
    if (r == NULL)
        return MHD_NO;
    ret = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    return ret;
}

/* Checks the headers and signature; returns the status to answer and sets
 * *why for the log. */
static unsigned verify(struct MHD_Connection *c, const upload_t *u, const char **why)
{
    const char *id = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "webhook-id");
    const char *ts = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "webhook-timestamp");
    const char *sig = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "webhook-signature");
    char *end;
    long long t;
    if (id == NULL || ts == NULL || sig == NULL || strlen(id) >= MAX_ID) {
        *why = "missing webhook headers";
        return 400;
    }
    errno = 0;
    t = strtoll(ts, &end, 10);
    if (errno != 0 || end == ts || *end != '\0' || llabs(t - (long long)time(NULL)) > MAX_SKEW) {
        *why = "timestamp too far from now";
        return 401;
    }
    if (!signature_ok(sig, id, ts, u->buf != NULL ? u->buf : "", u->len)) {
        *why = "bad signature";
        return 401;
    }
    if (!first_time(id)) {
        *why = "duplicate, already handled";
        return 204;
    }
    *why = NULL;
    return 204;
}

/* Logs the verified message and queues the report on ticket.whistled. */
static void handle(const char *id, const upload_t *u)
{
    json_t *j = json_loadb(u->buf, u->len, 0, NULL);
    const char *type = json_string_value(json_object_get(j, "type"));
    json_t *ticket = json_object_get(json_object_get(j, "data"), "ticket");
    const char *tid = json_string_value(json_object_get(ticket, "id"));
    const char *state = json_string_value(json_object_get(ticket, "state"));
    logf_line("%s %s ticket %s (%s): verified, 204", id, type ? type : "?", tid ? tid : "?",
              state ? state : "?");
    if (type != NULL && tid != NULL && strcmp(type, "ticket.whistled") == 0 &&
        strlen(tid) < MAX_TICKET_ID)
        enqueue(tid);
    json_decref(j);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version, const char *data,
                                  size_t *size, void **con_cls)
{
    upload_t *u = *con_cls;
    const char *why = NULL, *id;
    unsigned status;
    (void)cls;
    (void)version;
    if (u == NULL)
        return (*con_cls = calloc(1, sizeof(upload_t))) != NULL ? MHD_YES : MHD_NO;
    if (*size > 0) {
        char *grown;
        if (u->len + *size > MAX_BODY || u->too_big) {
            u->too_big = true;
        } else if ((grown = realloc(u->buf, u->len + *size + 1)) != NULL) {
            u->buf = grown;
            memcpy(u->buf + u->len, data, *size);
            u->len += *size;
            u->buf[u->len] = '\0';
        } else {
            return MHD_NO;
        }
        *size = 0;
        return MHD_YES;
    }
    if (strcmp(method, "POST") != 0)
        return reply(c, 405);
    if (strcmp(url, opt.path) != 0) {
        logf_line("%s: not this receiver's path (%s), 404", url, opt.path);
        return reply(c, 404);
    }
    if (u->too_big)
        return reply(c, 413);
    status = verify(c, u, &why);
    id = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "webhook-id");
    if (why == NULL)
        handle(id, u);
    else
        logf_line("%s: %s, %u", id != NULL ? id : "(no id)", why, status);
    return reply(c, status);
}

/* ---- options and main ---- */

static void usage(void)
{
    fputs("usage: whistle-receiver --org ID (--secret whsec_... | --secret-env VAR)\n"
          "         [--listen 127.0.0.1:9000] [--whistle http://127.0.0.1:8080]\n"
          "         (--token TOKEN | --sign) [--event report]\n",
          stderr);
}

static int parse(int argc, char **argv)
{
    const char *secret = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--sign") == 0) {
            opt.sign = true;
            continue;
        }
        if (v == NULL)
            return -1;
        i++;
        if (strcmp(a, "--listen") == 0)
            opt.listen = v;
        else if (strcmp(a, "--org") == 0)
            opt.org = v;
        else if (strcmp(a, "--secret") == 0)
            secret = v;
        else if (strcmp(a, "--secret-env") == 0)
            secret = getenv(v);
        else if (strcmp(a, "--whistle") == 0)
            opt.whistle = v;
        else if (strcmp(a, "--token") == 0)
            opt.token = v;
        else if (strcmp(a, "--event") == 0)
            opt.event = v;
        else
            return -1;
    }
    if (opt.org == NULL || strlen(opt.org) > 64 || (opt.token == NULL && !opt.sign) ||
        strpbrk(opt.event, "\"\\") != NULL || decode_secret(secret) != 0)
        return -1;
    snprintf(opt.path, sizeof(opt.path), "/hooks/%s", opt.org);
    return 0;
}

static struct MHD_Daemon *start(void)
{
    struct sockaddr_in sa = { .sin_family = AF_INET };
    char host[64];
    const char *colon = strrchr(opt.listen, ':');
    if (colon == NULL || (size_t)(colon - opt.listen) >= sizeof(host))
        return NULL;
    memcpy(host, opt.listen, (size_t)(colon - opt.listen));
    host[colon - opt.listen] = '\0';
    if (inet_pton(AF_INET, host, &sa.sin_addr) != 1)
        return NULL;
    sa.sin_port = htons((uint16_t)atoi(colon + 1));
    return MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION, 0,
                            NULL, NULL, on_request, NULL, MHD_OPTION_SOCK_ADDR, &sa,
                            MHD_OPTION_NOTIFY_COMPLETED, on_completed, NULL,
                            MHD_OPTION_LISTENING_ADDRESS_REUSE, 1, MHD_OPTION_END);
}

int main(int argc, char **argv)
{
    struct MHD_Daemon *d;
    pthread_t w;
    sigset_t set;
    int sig = 0;
    if (parse(argc, argv) != 0) {
        usage();
        return 2;
    }
    /* Block the stop signals in every thread; main waits for them below. */
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    d = start();
    if (d == NULL) {
        fprintf(stderr, "whistle-receiver: cannot listen on %s\n", opt.listen);
        curl_global_cleanup();
        return 1;
    }
    pthread_create(&w, NULL, worker, NULL);
    logf_line("listening on http://%s%s for %s, reporting '%s' to %s (%s)", opt.listen, opt.path,
              opt.org, opt.event, opt.whistle, opt.sign ? "signed" : "bearer token");
    sigwait(&set, &sig);
    MHD_stop_daemon(d);
    pthread_mutex_lock(&queue.mu);
    queue.stop = true;
    pthread_cond_signal(&queue.cond);
    pthread_mutex_unlock(&queue.mu);
    pthread_join(w, NULL);
    curl_global_cleanup();
    logf_line("stopped");
    return 0;
}
