/* The server config loader (SPEC §2). See src/config.h.
 *
 * The document is read into a fresh cfg_t whose strings live in a pool, every
 * check runs to the end so that one run shows all problems, and the result is
 * handed out only when no error was reported. Tokens and secrets are held in
 * their own arrays so that wh_config_free can wipe them. */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <curl/curl.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "engine/error.h"
#include "engine/tz.h"
#include "engine/ydoc.h"
#include "src/config.h"

#define CRED_MAX      4096  /* tokens, secrets and the files holding them */
#define SECRET_MIN    24    /* decoded bytes of a webhook secret */
#define MAX_ORGS      10000 /* far above any city; keeps the quadratic checks cheap */
#define MAX_RETRY     64    /* entries of webhooks.retry */
#define MAX_CALENDARS 64    /* entries of calendars */
#define LOOP_MSG_MAX  400   /* characters of a parent loop shown in its message */

typedef struct {
    wh_config_t pub; /* first, so a wh_config_t * is a cfg_t * */
    char **pool;     /* plain strings behind pub's const pointers */
    size_t npool, cappool;
    wh_config_calendar_t *cals;
    int64_t *retry;
    wh_org_t *orgs;
    char **tokens;
    wh_config_webhook_t *webhooks;
} cfg_t;

/* Where the cross-org checks report, per org. */
typedef struct {
    const wh_ynode_t *node, *id, *parent, *token, *secret;
    const char *parent_id; /* points into the document */
} orgpos_t;

typedef struct {
    const wh_ydoc_t *doc;
    wh_diag_t *diag;
    cfg_t *cfg;
    const char *base; /* directory of the config file; NULL when it is the cwd */
    orgpos_t *pos;
    int rc; /* WH_ENOMEM once an allocation failed */
} ld_t;

#define ERR(ld, node, ...) wh_ynode_error((ld)->doc, (node), (ld)->diag, __VA_ARGS__)

static const char *const top_keys[] = { "listen",   "database",  "workflows",  "public_url",
                                        "timezone", "calendars", "durability", "webhooks",
                                        "actions",  "open311",   "orgs",       NULL };
static const char *const webhooks_keys[] = { "timeout", "retry", "max_connections_per_host", NULL };
static const char *const actions_keys[] = { "ttl", NULL };
static const char *const open311_keys[] = { "jurisdiction_id", NULL };
static const char *const org_keys[] = { "id",        "name",       "kind",    "parent", "token",
                                        "token_env", "token_file", "webhook", NULL };
static const char *const org_webhook_keys[] = { "url", "secret", "secret_env", "secret_file",
                                                NULL };
static const char *const token_keys[] = { "token", "token_env", "token_file" };
static const char *const secret_keys[] = { "secret", "secret_env", "secret_file" };

/* Names that `by` and notify lists give a meaning of their own; an org with
 * one of these ids could never be named. Kind names are checked separately. */
static const char *const reserved_ids[] = { "raiser",   "assignee",    "assignees",
                                            "laggards", "parents",     "system",
                                            "default",  "communities", NULL };

static const int64_t default_retry_s[] = { 5, 30, 120, 600, 1800, 3600, 10800, 21600 };

/* ---- memory ---- */

static char *pool_add(ld_t *ld, char *s)
{
    cfg_t *c = ld->cfg;
    if (s != NULL && c->npool == c->cappool) {
        size_t cap = c->cappool ? c->cappool * 2 : 32;
        char **v = realloc(c->pool, cap * sizeof(*v));
        if (v == NULL) {
            free(s);
            s = NULL;
        } else {
            c->pool = v;
            c->cappool = cap;
        }
    }
    if (s == NULL) {
        ld->rc = WH_ENOMEM;
        return NULL;
    }
    c->pool[c->npool++] = s;
    return s;
}

static char *pool_dup(ld_t *ld, const char *s)
{
    return pool_add(ld, strdup(s));
}

static char *pool_join(ld_t *ld, const char *a, const char *sep, const char *b)
{
    size_t la = strlen(a), ls = strlen(sep), lb = strlen(b);
    char *s = malloc(la + ls + lb + 1);
    if (s != NULL) {
        memcpy(s, a, la);
        memcpy(s + la, sep, ls);
        memcpy(s + la + ls, b, lb + 1);
    }
    return pool_add(ld, s);
}

/* Relative paths are taken from the config file's directory, so a config
 * works the same whatever directory the server is started from. */
static const char *resolve_path(ld_t *ld, const char *p)
{
    if (p[0] == '/' || ld->base == NULL)
        return pool_dup(ld, p);
    return pool_join(ld, ld->base, "/", p);
}

static void wipe_free(char *s)
{
    if (s == NULL)
        return;
    OPENSSL_cleanse(s, strlen(s));
    free(s);
}

void wh_config_free(wh_config_t *cfg)
{
    cfg_t *c = (cfg_t *)cfg;
    size_t n;

    if (c == NULL)
        return;
    n = c->pub.dir.n;
    for (size_t i = 0; c->tokens != NULL && i < n; i++)
        wipe_free(c->tokens[i]);
    for (size_t i = 0; c->webhooks != NULL && i < n; i++) {
        if (c->webhooks[i].secret != NULL)
            OPENSSL_cleanse(c->webhooks[i].secret, c->webhooks[i].secret_len);
        free(c->webhooks[i].secret);
    }
    for (size_t i = 0; i < c->npool; i++)
        free(c->pool[i]);
    free(c->pool);
    free(c->cals);
    free(c->retry);
    free(c->orgs);
    free(c->tokens);
    free(c->webhooks);
    free(c);
}

const char *wh_config_calendar(const wh_config_t *cfg, const char *name)
{
    if (cfg == NULL || name == NULL)
        return NULL;
    for (size_t i = 0; i < cfg->ncalendars; i++)
        if (strcmp(cfg->calendars[i].name, name) == 0)
            return cfg->calendars[i].path;
    return NULL;
}

/* ---- small readers ---- */

/* Reads map[key] as a string: 0 when absent, 1 with *out set, -1 after
 * reporting a value that is not a string. *node is the value (or NULL). */
static int get_str(ld_t *ld, const wh_ynode_t *map, const char *key, const char *what,
                   const wh_ynode_t **node, const char **out)
{
    const wh_ynode_t *n = wh_ynode_get(map, key);
    if (node != NULL)
        *node = n;
    if (n == NULL)
        return 0;
    return wh_ynode_str(ld->doc, n, what, ld->diag, out) ? 1 : -1;
}

/* The key node of map[key], for errors about the key itself. */
static const wh_ynode_t *key_node(const wh_ynode_t *map, const char *key)
{
    for (size_t i = 0; i < map->n; i++)
        if (strcmp(map->pairs[i].key->str, key) == 0)
            return map->pairs[i].key;
    return NULL;
}

/* An optional block: absent or null gives NULL; other non-mappings are
 * reported. Unknown keys inside are reported too. */
static const wh_ynode_t *get_block(ld_t *ld, const wh_ynode_t *map, const char *key,
                                   const char *const *keys)
{
    const wh_ynode_t *n = wh_ynode_get(map, key);
    if (n == NULL || wh_ynode_is_null(n))
        return NULL;
    if (!wh_ynode_expect(ld->doc, n, WH_YNODE_MAP, key, ld->diag))
        return NULL;
    if (keys != NULL)
        wh_ynode_check_keys(ld->doc, n, keys, key, ld->diag);
    return n;
}

/* Reads a wall-clock duration greater than 0 into *secs. */
static bool wall_duration(ld_t *ld, const wh_ynode_t *n, const char *what, int64_t *secs)
{
    const char *s, *why = NULL;
    wh_duration_t d;
    int rc;

    if (!wh_ynode_str(ld->doc, n, what, ld->diag, &s))
        return false;
    rc = wh_duration_parse(s, false, &d, &why);
    if (rc == WH_ERANGE) {
        ERR(ld, n, "%s '%s' is too large", what, s);
        return false;
    }
    if (rc != 0) {
        ERR(ld, n, "%s '%s' is not a duration: %s", what, s, why ? why : "malformed");
        return false;
    }
    if (wh_duration_is_work(d)) {
        ERR(ld, n, "%s must be wall-clock time (s, m, h, d), not working time", what);
        return false;
    }
    if (d.n <= 0) {
        ERR(ld, n, "%s must be greater than 0", what);
        return false;
    }
    *secs = d.n;
    return true;
}

/* Whether s is an http(s) URL with a host, judged by libcurl's parser. */
static bool http_url(const char *s)
{
    CURLU *u = curl_url();
    char *scheme = NULL, *host = NULL;
    bool ok = false;

    if (u == NULL)
        return false;
    for (const char *p = s; *p != '\0'; p++)
        if ((unsigned char)*p <= ' ' || *p == 0x7f)
            goto out;
    if (strncmp(s, "http://", 7) != 0 && strncmp(s, "https://", 8) != 0)
        goto out;
    if (curl_url_set(u, CURLUPART_URL, s, 0) != CURLUE_OK)
        goto out;
    if (curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK)
        goto out;
    ok = host[0] != '\0' && (strcmp(scheme, "http") == 0 || strcmp(scheme, "https") == 0);
out:
    curl_free(scheme);
    curl_free(host);
    curl_url_cleanup(u);
    return ok;
}

/* ---- top-level settings ---- */

/* Splits "host:port"; returns 0, -1 for a bad form or -2 for a bad port. */
static int parse_listen(const char *s, char host[64], int *port, bool *v6)
{
    const char *h = s, *colon;
    size_t hl;
    long p = 0;
    unsigned char addr[16];

    *v6 = s[0] == '[';
    if (*v6) {
        const char *end = strchr(s, ']');
        if (end == NULL || end[1] != ':')
            return -1;
        h = s + 1;
        colon = end + 1;
    } else if ((colon = strrchr(s, ':')) == NULL) {
        return -1;
    }
    hl = (size_t)(colon - h) - (*v6 ? 1 : 0);
    if (hl == 0 || hl >= 64)
        return -1;
    memcpy(host, h, hl);
    host[hl] = '\0';
    if (!*v6 && strcmp(host, "localhost") == 0)
        strcpy(host, "127.0.0.1");
    if (inet_pton(*v6 ? AF_INET6 : AF_INET, host, addr) != 1)
        return -1;
    if (colon[1] == '\0' || strspn(colon + 1, "0123456789") != strlen(colon + 1))
        return -1;
    if (strlen(colon + 1) > 5)
        return -2;
    for (const char *q = colon + 1; *q != '\0'; q++)
        p = p * 10 + (*q - '0');
    if (p < 1 || p > 65535)
        return -2;
    *port = (int)p;
    return 0;
}

static void load_listen(ld_t *ld, const wh_ynode_t *root)
{
    const wh_ynode_t *n;
    const char *s = "127.0.0.1:8080";
    char host[64];
    int rc;

    if (get_str(ld, root, "listen", "listen", &n, &s) < 0)
        return;
    rc = parse_listen(s, host, &ld->cfg->pub.port, &ld->cfg->pub.host_ipv6);
    if (rc == -1)
        ERR(ld, n, "listen must be HOST:PORT with an IPv4 address, localhost or [IPv6]");
    else if (rc == -2)
        ERR(ld, n, "listen port must be between 1 and 65535");
    else
        ld->cfg->pub.host = pool_dup(ld, host);
}

static void load_public_url(ld_t *ld, const wh_ynode_t *root)
{
    wh_config_t *c = &ld->cfg->pub;
    const wh_ynode_t *n;
    const char *s = NULL;
    char *url;
    size_t len;
    char buf[96];

    if (get_str(ld, root, "public_url", "public_url", &n, &s) < 0)
        return;
    if (s == NULL) {
        if (c->host == NULL)
            return; /* listen was bad and is reported */
        snprintf(buf, sizeof(buf), c->host_ipv6 ? "http://[%s]:%d" : "http://%s:%d", c->host,
                 c->port);
        c->public_url = pool_dup(ld, buf);
        return;
    }
    if (!http_url(s) || strchr(s, '?') != NULL || strchr(s, '#') != NULL) {
        ERR(ld, n, "public_url must be an http:// or https:// URL without query or fragment");
        return;
    }
    if ((url = pool_dup(ld, s)) == NULL)
        return;
    /* Action links are built as public_url + "/v1/…", so a trailing slash
     * would double up. */
    len = strlen(url);
    while (len > 0 && url[len - 1] == '/')
        url[--len] = '\0';
    c->public_url = url;
}

static void load_paths(ld_t *ld, const wh_ynode_t *root)
{
    static const char *const keys[] = { "database", "workflows" };
    const char **dst[] = { &ld->cfg->pub.database, &ld->cfg->pub.workflows };

    for (size_t i = 0; i < 2; i++) {
        const wh_ynode_t *n;
        const char *s = NULL;
        int rc = get_str(ld, root, keys[i], keys[i], &n, &s);
        if (rc == 0)
            ERR(ld, root, "missing key '%s'", keys[i]);
        else if (rc > 0 && s[0] == '\0')
            ERR(ld, n, "%s must not be empty", keys[i]);
        else if (rc > 0)
            *dst[i] = resolve_path(ld, s);
    }
}

static void load_timezone(ld_t *ld, const wh_ynode_t *root)
{
    const wh_ynode_t *n;
    const char *s = WH_TZ_DEFAULT;
    wh_tz_t *tz = NULL;
    int rc;

    if (get_str(ld, root, "timezone", "timezone", &n, &s) < 0)
        return;
    rc = wh_tz_load(s, &tz);
    wh_tz_free(tz);
    if (rc == WH_ENOMEM)
        ld->rc = rc;
    else if (rc != 0)
        ERR(ld, n, "unknown time zone '%s'", s);
    else
        ld->cfg->pub.timezone = pool_dup(ld, s);
}

static void load_durability(ld_t *ld, const wh_ynode_t *root)
{
    const wh_ynode_t *n;
    const char *s = "full";

    if (get_str(ld, root, "durability", "durability", &n, &s) < 0)
        return;
    if (strcmp(s, "full") == 0)
        ld->cfg->pub.durability = WH_DURABILITY_FULL;
    else if (strcmp(s, "normal") == 0)
        ld->cfg->pub.durability = WH_DURABILITY_NORMAL;
    else
        ERR(ld, n, "durability must be full or normal");
}

static void load_calendar(ld_t *ld, const wh_ypair_t *p)
{
    wh_config_t *c = &ld->cfg->pub;
    wh_config_calendar_t *cal = &ld->cfg->cals[c->ncalendars];
    const char *s, *path;

    if (!wh_name_valid(p->key->str)) {
        ERR(ld, p->key, "calendar name '%s' must be 1-64 characters of [a-z0-9-]", p->key->str);
        return;
    }
    if (!wh_ynode_str(ld->doc, p->value, "calendar path", ld->diag, &s))
        return;
    if ((path = resolve_path(ld, s)) == NULL)
        return;
    /* Only existence is checked here; the calendar loader parses it. */
    if (access(path, R_OK) != 0) {
        ERR(ld, p->value, "cannot read calendar file '%s': %s", s, strerror(errno));
        return;
    }
    cal->name = pool_dup(ld, p->key->str);
    cal->path = path;
    c->ncalendars++;
}

static void load_calendars(ld_t *ld, const wh_ynode_t *root)
{
    const wh_ynode_t *m = get_block(ld, root, "calendars", NULL);

    if (m == NULL)
        return;
    if (m->n > MAX_CALENDARS) {
        ERR(ld, m, "calendars has more than %d entries", MAX_CALENDARS);
        return;
    }
    if ((ld->cfg->cals = calloc(m->n ? m->n : 1, sizeof(*ld->cfg->cals))) == NULL) {
        ld->rc = WH_ENOMEM;
        return;
    }
    ld->cfg->pub.calendars = ld->cfg->cals;
    for (size_t i = 0; i < m->n; i++)
        load_calendar(ld, &m->pairs[i]);
}

static void load_retry(ld_t *ld, const wh_ynode_t *n)
{
    cfg_t *c = ld->cfg;
    size_t count = n ? n->n : sizeof(default_retry_s) / sizeof(default_retry_s[0]);

    if (n != NULL && !wh_ynode_expect(ld->doc, n, WH_YNODE_SEQ, "webhooks.retry", ld->diag))
        return;
    if (count > MAX_RETRY) {
        ERR(ld, n, "webhooks.retry has more than %d entries", MAX_RETRY);
        return;
    }
    if ((c->retry = calloc(count ? count : 1, sizeof(*c->retry))) == NULL) {
        ld->rc = WH_ENOMEM;
        return;
    }
    for (size_t i = 0; i < count; i++) {
        int64_t s = n ? 0 : default_retry_s[i];
        if (n != NULL && !wall_duration(ld, n->items[i], "webhooks.retry", &s))
            continue;
        c->retry[i] = s * 1000;
    }
    c->pub.webhook_retry_ms = c->retry;
    c->pub.nwebhook_retry = count;
}

static void load_blocks(ld_t *ld, const wh_ynode_t *root)
{
    wh_config_t *c = &ld->cfg->pub;
    const wh_ynode_t *w = get_block(ld, root, "webhooks", webhooks_keys);
    const wh_ynode_t *a = get_block(ld, root, "actions", actions_keys);
    const wh_ynode_t *o = get_block(ld, root, "open311", open311_keys);
    const wh_ynode_t *n;
    const char *s = NULL;
    int64_t v;

    if ((n = wh_ynode_get(w, "timeout")) != NULL && wall_duration(ld, n, "webhooks.timeout", &v))
        c->webhook_timeout_ms = v * 1000;
    load_retry(ld, wh_ynode_get(w, "retry"));
    if ((n = wh_ynode_get(w, "max_connections_per_host")) != NULL &&
        wh_ynode_int(ld->doc, n, "webhooks.max_connections_per_host", 1, 1000, ld->diag, &v))
        c->max_connections_per_host = (int)v;
    if ((n = wh_ynode_get(a, "ttl")) != NULL && wall_duration(ld, n, "actions.ttl", &v))
        c->action_ttl_s = v;
    if (get_str(ld, o, "jurisdiction_id", "open311.jurisdiction_id", &n, &s) > 0) {
        if (s[0] == '\0')
            ERR(ld, n, "open311.jurisdiction_id must not be empty");
        else
            c->jurisdiction_id = pool_dup(ld, s);
    }
}

/* ---- credentials ---- */

/* Reads a token or secret file: trailing whitespace is dropped (editors add a
 * newline) and the size is capped. Returns a string to wipe, or NULL after
 * reporting. */
static char *read_cred_file(ld_t *ld, const wh_ynode_t *n, const char *what, const char *path)
{
    const char *full = resolve_path(ld, path);
    char *buf = NULL;
    size_t len = 0;
    FILE *f = NULL;

    if (full == NULL)
        return NULL;
    if ((f = fopen(full, "rb")) == NULL) {
        ERR(ld, n, "cannot read %s file '%s': %s", what, path, strerror(errno));
        return NULL;
    }
    if ((buf = malloc(CRED_MAX + 2)) == NULL) {
        ld->rc = WH_ENOMEM;
        goto out;
    }
    errno = 0;
    len = fread(buf, 1, CRED_MAX + 1, f);
    if (ferror(f)) {
        ERR(ld, n, "cannot read %s file '%s': %s", what, path, strerror(errno ? errno : EIO));
        goto fail;
    }
    if (len > CRED_MAX) {
        ERR(ld, n, "%s file '%s' is larger than %d bytes", what, path, CRED_MAX);
        goto fail;
    }
    while (len > 0 && isspace((unsigned char)buf[len - 1]))
        len--;
    buf[len] = '\0';
    if (len == 0) {
        ERR(ld, n, "%s file '%s' is empty", what, path);
        goto fail;
    }
    goto out;
fail:
    OPENSSL_cleanse(buf, CRED_MAX + 2);
    free(buf);
    buf = NULL;
out:
    fclose(f);
    return buf;
}

static char *read_cred_env(ld_t *ld, const wh_ynode_t *n, const char *var)
{
    const char *v = getenv(var);
    char *s;

    if (v == NULL) {
        ERR(ld, n, "environment variable '%s' is not set", var);
        return NULL;
    }
    if (v[0] == '\0') {
        ERR(ld, n, "environment variable '%s' is empty", var);
        return NULL;
    }
    if ((s = strdup(v)) == NULL)
        ld->rc = WH_ENOMEM;
    return s;
}

/* Reads whichever of keys[0] (literal), keys[1] (env var) and keys[2] (file)
 * the mapping gives; *at is its value node. Returns a string to wipe, or NULL
 * when absent or after reporting. The value never appears in a message. */
static char *load_cred(ld_t *ld, const wh_ynode_t *m, const char *const keys[3], const char *what,
                       const wh_ynode_t **at)
{
    int which = -1;
    const char *s;
    char *v = NULL;

    *at = NULL;
    for (int k = 0; k < 3; k++) {
        const wh_ynode_t *n = wh_ynode_get(m, keys[k]);
        if (n != NULL && *at != NULL)
            ERR(ld, key_node(m, keys[k]), "give only one of %s, %s or %s", keys[0], keys[1],
                keys[2]);
        else if (n != NULL) {
            *at = n;
            which = k;
        }
    }
    if (*at == NULL || !wh_ynode_str(ld->doc, *at, keys[which], ld->diag, &s))
        return NULL;
    if (which == 1)
        return read_cred_env(ld, *at, s);
    if (which == 2)
        return read_cred_file(ld, *at, what, s);
    if (s[0] == '\0')
        ERR(ld, *at, "%s must not be empty", what);
    else if ((v = strdup(s)) == NULL)
        ld->rc = WH_ENOMEM;
    return v;
}

static bool b64char(char ch)
{
    return (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
           ch == '+' || ch == '/';
}

/* Decodes "whsec_" + base64 (padding optional). Returns the bytes (to wipe)
 * or NULL when the text is not such a secret. */
static unsigned char *decode_whsec(const char *s, size_t *outlen)
{
    const char *b = s + 6;
    size_t n, pad = 0, add = 0;
    unsigned char *in = NULL, *out = NULL;
    int got;

    if (strncmp(s, "whsec_", 6) != 0 || (n = strlen(b)) == 0 || n > CRED_MAX)
        return NULL;
    while (pad < 2 && n > pad && b[n - 1 - pad] == '=')
        pad++;
    for (size_t i = 0; i < n - pad; i++)
        if (!b64char(b[i]))
            return NULL;
    /* Unpadded text is padded here, since EVP_DecodeBlock wants whole quads
     * and counts padding as zero bytes. */
    if (pad == 0 && n % 4 != 0)
        add = 4 - n % 4;
    if ((n + add) % 4 != 0 || add == 3)
        return NULL;
    in = malloc(n + add + 1);
    out = malloc((n + add) / 4 * 3 + 1);
    if (in == NULL || out == NULL)
        goto out;
    memcpy(in, b, n);
    memset(in + n, '=', add);
    got = EVP_DecodeBlock(out, in, (int)(n + add));
    if (got < 0 || (size_t)got < pad + add) {
        free(out);
        out = NULL;
        goto out;
    }
    *outlen = (size_t)got - pad - add;
out:
    if (in != NULL)
        OPENSSL_cleanse(in, n + add);
    free(in);
    return out;
}

/* ---- orgs ---- */

static int find_org(const ld_t *ld, const char *id, size_t before)
{
    for (size_t i = 0; i < before; i++)
        if (ld->cfg->orgs[i].id != NULL && strcmp(ld->cfg->orgs[i].id, id) == 0)
            return (int)i;
    return -1;
}

/* The id for messages about org i (which may lack one). */
static const char *org_label(const ld_t *ld, size_t i)
{
    return ld->cfg->orgs[i].id != NULL ? ld->cfg->orgs[i].id : "(no id)";
}

static bool reserved_id(const char *id)
{
    wh_org_kind_t k;
    for (const char *const *r = reserved_ids; *r != NULL; r++)
        if (strcmp(*r, id) == 0)
            return true;
    return wh_org_kind_parse(id, true, &k) == 0;
}

static void load_org_id(ld_t *ld, size_t i, const wh_ynode_t *m)
{
    const wh_ynode_t *n;
    const char *s = NULL;
    int rc = get_str(ld, m, "id", "org id", &n, &s), first;

    ld->pos[i].id = n;
    if (rc == 0)
        ERR(ld, m, "missing key 'id' in org");
    if (rc <= 0)
        return;
    if (!wh_name_valid(s))
        ERR(ld, n, "org id '%s' must be 1-64 characters of [a-z0-9-]", s);
    else if (reserved_id(s))
        ERR(ld, n, "org id '%s' is reserved (a role or kind name)", s);
    else if ((first = find_org(ld, s, i)) >= 0)
        ERR(ld, n, "duplicate org id '%s' (first at line %d)", s, ld->pos[first].id->line);
    /* Kept even when bad, so that parents naming it are not reported too. */
    ld->cfg->orgs[i].id = pool_dup(ld, s);
}

static void load_org_name_kind(ld_t *ld, size_t i, const wh_ynode_t *m)
{
    wh_org_t *o = &ld->cfg->orgs[i];
    const wh_ynode_t *n;
    const char *s = NULL;
    int rc = get_str(ld, m, "name", "org name", &n, &s);

    if (rc == 0)
        ERR(ld, m, "missing key 'name' in org");
    else if (rc > 0 && s[0] == '\0')
        ERR(ld, n, "org name must not be empty");
    else if (rc > 0)
        o->name = pool_dup(ld, s);
    rc = get_str(ld, m, "kind", "org kind", &n, &s);
    if (rc == 0)
        ERR(ld, m, "missing key 'kind' in org");
    else if (rc > 0 && wh_org_kind_parse(s, false, &o->kind) != 0)
        ERR(ld, n,
            "unknown org kind '%s' (street, community, department, district, joint-meeting, "
            "supervisor)",
            s);
    if (get_str(ld, m, "parent", "org parent", &ld->pos[i].parent, &s) > 0)
        ld->pos[i].parent_id = s;
}

/* Bearer tokens travel in an HTTP header, so they are kept to visible ASCII. */
static bool token_ok(const char *t)
{
    for (; *t != '\0'; t++)
        if ((unsigned char)*t <= ' ' || (unsigned char)*t >= 0x7f)
            return false;
    return true;
}

static void load_org_token(ld_t *ld, size_t i, const wh_ynode_t *m)
{
    char *t = load_cred(ld, m, token_keys, "token", &ld->pos[i].token);

    if (t == NULL)
        return;
    if (!token_ok(t)) {
        ERR(ld, ld->pos[i].token, "token must be printable ASCII without spaces");
        wipe_free(t);
        return;
    }
    for (size_t j = 0; j < i; j++) {
        if (ld->cfg->tokens[j] != NULL && strcmp(ld->cfg->tokens[j], t) == 0) {
            ERR(ld, ld->pos[i].token, "org '%s' has the same token as org '%s' (line %d)",
                org_label(ld, i), org_label(ld, j), ld->pos[j].token->line);
            break;
        }
    }
    ld->cfg->tokens[i] = t;
}

static void check_shared_secret(ld_t *ld, size_t i)
{
    const wh_config_webhook_t *w = ld->cfg->webhooks;

    for (size_t j = 0; j < i; j++) {
        if (w[j].secret != NULL && w[j].secret_len == w[i].secret_len &&
            CRYPTO_memcmp(w[j].secret, w[i].secret, w[i].secret_len) == 0) {
            ERR(ld, ld->pos[i].secret, "org '%s' has the same webhook secret as org '%s' (line %d)",
                org_label(ld, i), org_label(ld, j), ld->pos[j].secret->line);
            return;
        }
    }
}

static void load_org_secret(ld_t *ld, size_t i, const wh_ynode_t *w)
{
    wh_config_webhook_t *hook = &ld->cfg->webhooks[i];
    char *s = load_cred(ld, w, secret_keys, "webhook secret", &ld->pos[i].secret);
    unsigned char *bytes;
    size_t len = 0;

    if (ld->pos[i].secret == NULL)
        ERR(ld, w, "webhook needs one of secret, secret_env or secret_file");
    if (s == NULL)
        return;
    bytes = decode_whsec(s, &len);
    wipe_free(s);
    if (bytes == NULL || len < SECRET_MIN) {
        if (bytes != NULL)
            OPENSSL_cleanse(bytes, len);
        free(bytes);
        ERR(ld, ld->pos[i].secret,
            "webhook secret must be 'whsec_' followed by base64 of at least %d bytes", SECRET_MIN);
        return;
    }
    hook->secret = bytes;
    hook->secret_len = len;
    check_shared_secret(ld, i);
}

static void load_org_webhook(ld_t *ld, size_t i, const wh_ynode_t *w)
{
    const wh_ynode_t *n;
    const char *url = NULL;
    int rc;

    if (!wh_ynode_expect(ld->doc, w, WH_YNODE_MAP, "webhook", ld->diag))
        return;
    wh_ynode_check_keys(ld->doc, w, org_webhook_keys, "webhook", ld->diag);
    rc = get_str(ld, w, "url", "webhook url", &n, &url);
    if (rc == 0)
        ERR(ld, w, "missing key 'url' in webhook");
    else if (rc > 0 && !http_url(url))
        ERR(ld, n, "webhook url must be an http:// or https:// URL");
    else if (rc > 0)
        ld->cfg->webhooks[i].url = pool_dup(ld, url);
    load_org_secret(ld, i, w);
}

static void load_org(ld_t *ld, size_t i, const wh_ynode_t *m)
{
    const wh_ynode_t *w;

    ld->cfg->orgs[i].parent = -1;
    ld->pos[i].node = m;
    if (!wh_ynode_expect(ld->doc, m, WH_YNODE_MAP, "org", ld->diag))
        return;
    wh_ynode_check_keys(ld->doc, m, org_keys, "org", ld->diag);
    load_org_id(ld, i, m);
    load_org_name_kind(ld, i, m);
    load_org_token(ld, i, m);
    if ((w = wh_ynode_get(m, "webhook")) != NULL)
        load_org_webhook(ld, i, w);
}

static void resolve_parents(ld_t *ld, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        const char *p = ld->pos[i].parent_id;
        int j;
        if (p == NULL)
            continue;
        if ((j = find_org(ld, p, n)) < 0)
            ERR(ld, ld->pos[i].parent, "unknown parent '%s'", p);
        ld->cfg->orgs[i].parent = j;
    }
}

/* Reports the loop through org start once, at the member that comes first
 * in the file, as "a -> b -> a". */
static void report_loop(ld_t *ld, int start)
{
    const wh_org_t *o = ld->cfg->orgs;
    char msg[LOOP_MSG_MAX + 8];
    size_t len = 0;
    int first = start, j = start;

    do {
        if (j < first)
            first = j;
        j = o[j].parent;
    } while (j != start);
    j = first;
    do {
        int w = snprintf(msg + len, sizeof(msg) - len, "%s -> ", o[j].id);
        if (w < 0 || len + (size_t)w >= LOOP_MSG_MAX) {
            len += (size_t)snprintf(msg + len, sizeof(msg) - len, "... -> ");
            break;
        }
        len += (size_t)w;
        j = o[j].parent;
    } while (j != first);
    snprintf(msg + len, sizeof(msg) - len, "%s", o[first].id);
    ERR(ld, ld->pos[first].parent, "parent loop: %s", msg);
}

/* Follows each org's parent chain; a chain that comes back to a node of the
 * same walk has found a loop no earlier walk saw. */
static void check_loops(ld_t *ld, size_t n)
{
    size_t *mark = calloc(n, sizeof(*mark));

    if (mark == NULL) {
        ld->rc = WH_ENOMEM;
        return;
    }
    for (size_t i = 0; i < n; i++) {
        int j = (int)i;
        while (j >= 0 && mark[j] == 0) {
            mark[j] = i + 1;
            j = ld->cfg->orgs[j].parent;
        }
        if (j >= 0 && mark[j] == i + 1)
            report_loop(ld, j);
    }
    free(mark);
}

static int alloc_orgs(ld_t *ld, size_t n)
{
    cfg_t *c = ld->cfg;

    c->orgs = calloc(n, sizeof(*c->orgs));
    c->tokens = calloc(n, sizeof(*c->tokens));
    c->webhooks = calloc(n, sizeof(*c->webhooks));
    ld->pos = calloc(n, sizeof(*ld->pos));
    if (c->orgs == NULL || c->tokens == NULL || c->webhooks == NULL || ld->pos == NULL)
        return ld->rc = WH_ENOMEM;
    /* Set now so that wh_config_free wipes whatever gets read. */
    c->pub.dir.orgs = c->orgs;
    c->pub.dir.n = n;
    c->pub.tokens = (const char *const *)c->tokens;
    c->pub.webhooks = c->webhooks;
    return 0;
}

static void load_orgs(ld_t *ld, const wh_ynode_t *root)
{
    const wh_ynode_t *s = wh_ynode_get(root, "orgs");
    cfg_t *c = ld->cfg;

    if (s == NULL) {
        ERR(ld, root, "missing key 'orgs'");
        return;
    }
    if (!wh_ynode_expect(ld->doc, s, WH_YNODE_SEQ, "orgs", ld->diag))
        return;
    if (s->n == 0 || s->n > MAX_ORGS) {
        ERR(ld, s, s->n ? "orgs has more than %d entries" : "orgs must not be empty", MAX_ORGS);
        return;
    }
    if (alloc_orgs(ld, s->n) != 0)
        return;
    for (size_t i = 0; i < s->n && ld->rc == 0; i++)
        load_org(ld, i, s->items[i]);
    resolve_parents(ld, s->n);
    check_loops(ld, s->n);
    for (size_t i = 0; i < s->n; i++) {
        c->orgs[i].has_token = c->tokens[i] != NULL;
        c->orgs[i].has_webhook = c->webhooks[i].url != NULL;
    }
}

/* ---- entry points ---- */

static cfg_t *cfg_new(void)
{
    cfg_t *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return NULL;
    c->pub.durability = WH_DURABILITY_FULL;
    c->pub.webhook_timeout_ms = 10 * 1000;
    c->pub.max_connections_per_host = 8;
    c->pub.action_ttl_s = 7 * 86400;
    return c;
}

static void load_root(ld_t *ld, const wh_ynode_t *root)
{
    wh_ynode_check_keys(ld->doc, root, top_keys, NULL, ld->diag);
    load_listen(ld, root);
    load_paths(ld, root);
    load_public_url(ld, root);
    load_timezone(ld, root);
    load_calendars(ld, root);
    load_durability(ld, root);
    load_blocks(ld, root);
    load_orgs(ld, root);
}

/* errors is the diag's error count before the file was read: the YAML
 * layer reports some problems (duplicate keys) without failing, and those
 * refuse the config too. */
static int load_doc(const char *name, const wh_ydoc_t *doc, wh_diag_t *diag, size_t errors,
                    wh_config_t **out)
{
    const wh_ynode_t *root = wh_ydoc_root(doc);
    const char *slash = strrchr(name, '/');
    ld_t ld = { doc, diag, cfg_new(), NULL, NULL, 0 };
    char *base = NULL;

    if (ld.cfg == NULL)
        return WH_ENOMEM;
    if (slash != NULL) {
        base = slash == name ? strdup("/") : strndup(name, (size_t)(slash - name));
        if ((ld.base = base) == NULL)
            ld.rc = WH_ENOMEM;
    }
    if (ld.rc == 0 && root == NULL)
        wh_diag_error(diag, name, 0, 0, "empty config file");
    else if (ld.rc == 0 && wh_ynode_expect(doc, root, WH_YNODE_MAP, "the config", diag))
        load_root(&ld, root);
    free(base);
    free(ld.pos);
    if (ld.rc == 0 && wh_diag_errors(diag) > errors)
        ld.rc = WH_EPARSE;
    if (ld.rc != 0) {
        wh_config_free(&ld.cfg->pub);
        return ld.rc;
    }
    *out = &ld.cfg->pub;
    return 0;
}

int wh_config_load(const char *path, wh_diag_t *diag, wh_config_t **out)
{
    wh_ydoc_t *doc = NULL;
    size_t errors = wh_diag_errors(diag);
    int rc;

    *out = NULL;
    rc = wh_ydoc_load_file(path, diag, &doc);
    if (rc == 0)
        rc = load_doc(path, doc, diag, errors, out);
    wh_ydoc_free(doc);
    return rc;
}

int wh_config_load_buffer(const char *name, const char *buf, size_t len, wh_diag_t *diag,
                          wh_config_t **out)
{
    wh_ydoc_t *doc = NULL;
    size_t errors = wh_diag_errors(diag);
    int rc;

    *out = NULL;
    rc = wh_ydoc_load_buffer(name, buf, len, diag, &doc);
    if (rc == 0)
        rc = load_doc(name, doc, diag, errors, out);
    wh_ydoc_free(doc);
    return rc;
}
