/* libFuzzer target: the server config loader (src/config.c). Checked for
 * every input:
 * - loading is deterministic: the same bytes loaded twice give the same
 *   result code, the same diagnostics and, when accepted, the same config;
 * - an accepted config has no errors and holds together: org ids well
 *   formed and unique, parents in range and free of loops, has_token and
 *   has_webhook agreeing with the tokens and webhooks, a webhook with a
 *   secret, a port and timeouts in range;
 * - a refused one says why (an error in the diagnostics) unless the loader
 *   ran out of memory. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "engine/diag.h"
#include "engine/error.h"
#include "fuzz/fuzz_util.h"
#include "src/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Relative paths in the file resolve under this (not created). */
#define NAME "fuzz-config/whistle.yaml"

static bool same_str(const char *a, const char *b)
{
    return (a == NULL && b == NULL) || (a != NULL && b != NULL && strcmp(a, b) == 0);
}

static bool same_bytes(const unsigned char *a, size_t na, const unsigned char *b, size_t nb)
{
    return na == nb && ((a == NULL && b == NULL) ||
                        (a != NULL && b != NULL && (na == 0 || memcmp(a, b, na) == 0)));
}

static void check_same_orgs(const wh_config_t *a, const wh_config_t *b)
{
    FUZZ_CHECK(a->dir.n == b->dir.n);
    for (size_t i = 0; i < a->dir.n; i++) {
        const wh_org_t *x = &a->dir.orgs[i], *y = &b->dir.orgs[i];
        FUZZ_CHECK(strcmp(x->id, y->id) == 0 && same_str(x->name, y->name));
        FUZZ_CHECK(x->kind == y->kind && x->parent == y->parent);
        FUZZ_CHECK(x->has_token == y->has_token && x->has_webhook == y->has_webhook);
        FUZZ_CHECK(same_str(a->tokens[i], b->tokens[i]));
        FUZZ_CHECK(same_str(a->webhooks[i].url, b->webhooks[i].url));
        FUZZ_CHECK(same_bytes(a->webhooks[i].secret, a->webhooks[i].secret_len,
                              b->webhooks[i].secret, b->webhooks[i].secret_len));
    }
}

static void check_same(const wh_config_t *a, const wh_config_t *b)
{
    FUZZ_CHECK(same_str(a->host, b->host) && a->port == b->port && a->host_ipv6 == b->host_ipv6);
    FUZZ_CHECK(same_str(a->database, b->database) && same_str(a->workflows, b->workflows));
    FUZZ_CHECK(same_str(a->public_url, b->public_url) && same_str(a->timezone, b->timezone));
    FUZZ_CHECK(a->ncalendars == b->ncalendars);
    for (size_t i = 0; i < a->ncalendars; i++)
        FUZZ_CHECK(same_str(a->calendars[i].name, b->calendars[i].name) &&
                   same_str(a->calendars[i].path, b->calendars[i].path));
    FUZZ_CHECK(a->durability == b->durability && a->webhook_timeout_ms == b->webhook_timeout_ms);
    FUZZ_CHECK(a->nwebhook_retry == b->nwebhook_retry);
    for (size_t i = 0; i < a->nwebhook_retry; i++)
        FUZZ_CHECK(a->webhook_retry_ms[i] == b->webhook_retry_ms[i]);
    FUZZ_CHECK(a->max_connections_per_host == b->max_connections_per_host);
    FUZZ_CHECK(a->action_ttl_s == b->action_ttl_s);
    FUZZ_CHECK(same_str(a->jurisdiction_id, b->jurisdiction_id));
    check_same_orgs(a, b);
}

static bool valid_id(const char *s)
{
    if (s == NULL || s[0] == '\0')
        return false;
    for (; *s != '\0'; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') || *s == '-'))
            return false;
    return true;
}

static void check_orgs(const wh_config_t *c)
{
    size_t n = c->dir.n;
    for (size_t i = 0; i < n; i++) {
        const wh_org_t *o = &c->dir.orgs[i];
        int p = o->parent;
        size_t steps = 0;

        FUZZ_CHECK(valid_id(o->id));
        FUZZ_CHECK(wh_orgdir_find(&c->dir, o->id) == (int)i);
        FUZZ_CHECK(o->has_token == (c->tokens[i] != NULL));
        FUZZ_CHECK(o->has_webhook == (c->webhooks[i].url != NULL));
        FUZZ_CHECK(c->webhooks[i].url == NULL ||
                   (c->webhooks[i].secret != NULL && c->webhooks[i].secret_len > 0));
        for (; p >= 0; p = c->dir.orgs[p].parent) {
            FUZZ_CHECK((size_t)p < n && (size_t)p != i);
            FUZZ_CHECK(++steps <= n);
        }
    }
}

static void check_accepted(const wh_config_t *c, wh_diag_t *diag)
{
    FUZZ_CHECK(wh_diag_errors(diag) == 0);
    FUZZ_CHECK(c->host != NULL && c->port >= 0 && c->port <= 65535);
    FUZZ_CHECK(c->database != NULL && c->workflows != NULL && c->public_url != NULL);
    FUZZ_CHECK(c->timezone != NULL);
    FUZZ_CHECK(c->webhook_timeout_ms > 0 && c->action_ttl_s > 0);
    FUZZ_CHECK(c->max_connections_per_host > 0);
    for (size_t i = 0; i < c->nwebhook_retry; i++)
        FUZZ_CHECK(c->webhook_retry_ms[i] >= 0);
    for (size_t i = 0; i < c->ncalendars; i++)
        FUZZ_CHECK(wh_config_calendar(c, c->calendars[i].name) != NULL);
    check_orgs(c);
}

static void check_same_diag(wh_diag_t *a, wh_diag_t *b)
{
    char x[512], y[512];
    FUZZ_CHECK(wh_diag_count(a) == wh_diag_count(b));
    for (size_t i = 0; i < wh_diag_count(a); i++) {
        wh_diag_format(a, i, x, sizeof(x));
        wh_diag_format(b, i, y, sizeof(y));
        FUZZ_CHECK(strcmp(x, y) == 0);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    wh_diag_t *d1 = wh_diag_new(), *d2 = wh_diag_new();
    wh_config_t *c1 = NULL, *c2 = NULL;
    int rc1, rc2;

    FUZZ_CHECK(d1 != NULL && d2 != NULL);
    rc1 = wh_config_load_buffer(NAME, (const char *)data, size, d1, &c1);
    rc2 = wh_config_load_buffer(NAME, (const char *)data, size, d2, &c2);
    FUZZ_CHECK(rc1 == rc2);
    FUZZ_CHECK((rc1 == 0) == (c1 != NULL) && (rc2 == 0) == (c2 != NULL));
    check_same_diag(d1, d2);
    if (rc1 == 0) {
        check_accepted(c1, d1);
        check_same(c1, c2);
    } else if (rc1 != WH_ENOMEM) {
        FUZZ_CHECK(wh_diag_errors(d1) > 0);
    }
    wh_config_free(c1);
    wh_config_free(c2);
    wh_diag_free(d1);
    wh_diag_free(d2);
    return 0;
}
