/* Tests of the server config loader (src/config.c, SPEC §2).
 *
 * Each test runs in its own process (Criterion forks), inside a fresh
 * temporary directory that is also the working directory, so configs are
 * written as "whistle.yaml" and diagnostics read "whistle.yaml:L:C: …". */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "engine/error.h"
#include "src/config.h"

static char tmp[64];
static char out[16384]; /* every diagnostic of the last load, one per line */

static void rm_tree(const char *path)
{
    struct stat st;
    DIR *d;
    struct dirent *e;
    char sub[512];

    if (lstat(path, &st) != 0)
        return;
    if (S_ISDIR(st.st_mode) && (d = opendir(path)) != NULL) {
        while ((e = readdir(d)) != NULL) {
            if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
                continue;
            snprintf(sub, sizeof(sub), "%s/%s", path, e->d_name);
            rm_tree(sub);
        }
        closedir(d);
        rmdir(path);
        return;
    }
    unlink(path);
}

static void setup(void)
{
    strcpy(tmp, "/tmp/whcfg-XXXXXX");
    cr_assert_not_null(mkdtemp(tmp));
    cr_assert_eq(chdir(tmp), 0);
}

static void teardown(void)
{
    cr_assert_eq(chdir("/"), 0);
    rm_tree(tmp);
}

TestSuite(config, .init = setup, .fini = teardown);

static void put(const char *name, const char *text)
{
    FILE *f = fopen(name, "wb");
    cr_assert_not_null(f, "cannot write %s", name);
    fputs(text, f);
    fclose(f);
}

static int load_path(const char *path, wh_config_t **cfg)
{
    wh_diag_t *d = wh_diag_new();
    size_t len = 0;
    int rc;

    cr_assert_not_null(d);
    rc = wh_config_load(path, d, cfg);
    out[0] = '\0';
    for (size_t i = 0; i < wh_diag_count(d); i++) {
        int n = wh_diag_format(d, i, out + len, sizeof(out) - len - 1);
        cr_assert(n > 0 && len + (size_t)n + 1 < sizeof(out));
        len += (size_t)n;
        out[len++] = '\n';
        out[len] = '\0';
    }
    wh_diag_free(d);
    return rc;
}

/* Writes text as whistle.yaml and loads it; the result must be an error. */
static void load_bad(const char *text)
{
    wh_config_t *cfg = (wh_config_t *)1;
    put("whistle.yaml", text);
    cr_assert_eq(load_path("whistle.yaml", &cfg), WH_EPARSE, "diagnostics:\n%s", out);
    cr_assert_null(cfg);
}

/* Writes text as whistle.yaml and loads it; the result must be good. */
static wh_config_t *load_good(const char *text)
{
    wh_config_t *cfg = NULL;
    put("whistle.yaml", text);
    cr_assert_eq(load_path("whistle.yaml", &cfg), 0, "diagnostics:\n%s", out);
    cr_assert_not_null(cfg);
    return cfg;
}

static void expect_bad(const char *text, const char *diags)
{
    load_bad(text);
    cr_assert_str_eq(out, diags);
}

/* Lines 1-2; "orgs:" is line 3 and the first org starts at line 4. */
#define HEAD    "database: db/whistle.db\nworkflows: wf\n"
#define ORG_A   "  - id: a\n    name: A\n    kind: street\n"
#define MINIMAL HEAD "orgs:\n" ORG_A

/* ---- good configs ---- */

Test(config, example_loads)
{
    wh_config_t *cfg = NULL;
    int fire, district, joint, xintan;

    cr_assert_eq(load_path(WH_SOURCE_DIR "/examples/whistle.yaml", &cfg), 0, "%s", out);
    cr_assert_str_eq(out, "");
    cr_assert_str_eq(cfg->host, "127.0.0.1");
    cr_assert_eq(cfg->port, 8080);
    cr_assert_str_eq(cfg->database, WH_SOURCE_DIR "/examples/../var/whistle.db");
    cr_assert_str_eq(cfg->workflows, WH_SOURCE_DIR "/examples/../workflows");
    cr_assert_str_eq(cfg->public_url, "http://127.0.0.1:8080");
    cr_assert_str_eq(cfg->timezone, "Asia/Shanghai");
    cr_assert_str_eq(wh_config_calendar(cfg, "workdays"),
                     WH_SOURCE_DIR "/examples/calendars/cn.yaml");
    cr_assert_null(wh_config_calendar(cfg, "weekends"));
    cr_assert_eq(cfg->durability, WH_DURABILITY_FULL);
    cr_assert_eq(cfg->webhook_timeout_ms, 10000);
    cr_assert_eq(cfg->nwebhook_retry, 8);
    cr_assert_eq(cfg->webhook_retry_ms[2], 120000);
    cr_assert_eq(cfg->webhook_retry_ms[7], 21600000);
    cr_assert_eq(cfg->max_connections_per_host, 8);
    cr_assert_eq(cfg->action_ttl_s, 7 * 86400);
    cr_assert_str_eq(cfg->jurisdiction_id, "beita.shaoyang.gov.cn");

    cr_assert_eq(cfg->dir.n, 9);
    fire = wh_orgdir_find(&cfg->dir, "fire-brigade");
    district = wh_orgdir_find(&cfg->dir, "beita-district");
    joint = wh_orgdir_find(&cfg->dir, "city-joint-meeting");
    xintan = wh_orgdir_find(&cfg->dir, "xintan-street");
    cr_assert(fire >= 0 && district >= 0 && joint >= 0 && xintan >= 0);
    cr_assert_str_eq(cfg->dir.orgs[fire].name, "区消防救援大队");
    cr_assert_eq(cfg->dir.orgs[fire].kind, WH_KIND_DEPARTMENT);
    cr_assert_eq(cfg->dir.orgs[fire].parent, district);
    cr_assert_eq(cfg->dir.orgs[district].parent, joint);
    cr_assert_eq(cfg->dir.orgs[joint].parent, -1);
    cr_assert_eq(cfg->dir.orgs[joint].kind, WH_KIND_JOINT_MEETING);
    cr_assert(cfg->dir.orgs[fire].has_webhook);
    cr_assert(cfg->dir.orgs[fire].has_token);
    cr_assert_not(cfg->dir.orgs[xintan].has_webhook);
    cr_assert_null(cfg->webhooks[xintan].url);
    cr_assert_str_eq(cfg->webhooks[fire].url, "http://127.0.0.1:9000/hooks/fire-brigade");
    cr_assert_eq(cfg->webhooks[fire].secret_len, 32);
    cr_assert_eq(cfg->webhooks[fire].secret[0], 0x51); /* 'Ue3K' decodes to 51 ed ca */
    cr_assert_eq(cfg->webhooks[fire].secret[1], 0xed);
    cr_assert_str_eq(cfg->tokens[xintan], "demo-xintan-token");
    wh_config_free(cfg);
}

Test(config, defaults)
{
    wh_config_t *cfg = load_good(MINIMAL);

    cr_assert_str_eq(cfg->host, "127.0.0.1");
    cr_assert_eq(cfg->port, 8080);
    cr_assert_not(cfg->host_ipv6);
    cr_assert_str_eq(cfg->public_url, "http://127.0.0.1:8080");
    cr_assert_str_eq(cfg->database, "db/whistle.db"); /* the config is in the cwd */
    cr_assert_str_eq(cfg->timezone, "Asia/Shanghai");
    cr_assert_eq(cfg->ncalendars, 0);
    cr_assert_eq(cfg->durability, WH_DURABILITY_FULL);
    cr_assert_eq(cfg->webhook_timeout_ms, 10000);
    cr_assert_eq(cfg->nwebhook_retry, 8);
    cr_assert_eq(cfg->webhook_retry_ms[0], 5000);
    cr_assert_eq(cfg->webhook_retry_ms[7], 6 * 3600 * 1000);
    cr_assert_eq(cfg->max_connections_per_host, 8);
    cr_assert_eq(cfg->action_ttl_s, 604800);
    cr_assert_null(cfg->jurisdiction_id);
    cr_assert_eq(cfg->dir.n, 1);
    cr_assert_eq(cfg->dir.orgs[0].parent, -1);
    cr_assert_not(cfg->dir.orgs[0].has_token);
    cr_assert_not(cfg->dir.orgs[0].has_webhook);
    cr_assert_null(cfg->tokens[0]);
    wh_config_free(cfg);
}

Test(config, settings)
{
    wh_config_t *cfg = load_good("listen: '[::1]:9443'\n"
                                 "public_url: https://whistle.example.org/base//\n"
                                 "timezone: UTC\n"
                                 "durability: normal\n"
                                 "webhooks: { timeout: 90s, retry: [1m, 2d], "
                                 "max_connections_per_host: 1000 }\n"
                                 "actions: { ttl: 12h }\n"
                                 "open311: { jurisdiction_id: example.org }\n" MINIMAL);

    cr_assert_str_eq(cfg->host, "::1");
    cr_assert(cfg->host_ipv6);
    cr_assert_eq(cfg->port, 9443);
    cr_assert_str_eq(cfg->public_url, "https://whistle.example.org/base");
    cr_assert_str_eq(cfg->timezone, "UTC");
    cr_assert_eq(cfg->durability, WH_DURABILITY_NORMAL);
    cr_assert_eq(cfg->webhook_timeout_ms, 90000);
    cr_assert_eq(cfg->nwebhook_retry, 2);
    cr_assert_eq(cfg->webhook_retry_ms[0], 60000);
    cr_assert_eq(cfg->webhook_retry_ms[1], 2 * 86400 * 1000LL);
    cr_assert_eq(cfg->max_connections_per_host, 1000);
    cr_assert_eq(cfg->action_ttl_s, 43200);
    cr_assert_str_eq(cfg->jurisdiction_id, "example.org");
    wh_config_free(cfg);
}

Test(config, localhost_and_ipv6_default_url)
{
    wh_config_t *cfg = load_good("listen: localhost:9000\n" MINIMAL);
    cr_assert_str_eq(cfg->host, "127.0.0.1");
    cr_assert_str_eq(cfg->public_url, "http://127.0.0.1:9000");
    wh_config_free(cfg);
    cfg = load_good("listen: '[::]:80'\n" MINIMAL);
    cr_assert_str_eq(cfg->public_url, "http://[::]:80");
    wh_config_free(cfg);
}

/* Relative paths (database, workflows, calendars, token files) follow the
 * config file's directory, not the working directory. */
Test(config, paths_resolve_against_config_dir)
{
    char path[128], want[192];
    wh_config_t *cfg = NULL;

    cr_assert_eq(mkdir("sub", 0700), 0);
    cr_assert_eq(mkdir("sub/cal", 0700), 0);
    put("sub/cal/cn.yaml", "zone: Asia/Shanghai\n");
    put("sub/a.token", "tok-from-file\n");
    put("sub/whistle.yaml", "database: ../var/w.db\nworkflows: /abs/wf\n"
                            "calendars: { workdays: cal/cn.yaml }\n"
                            "orgs:\n" ORG_A "    token_file: a.token\n");
    snprintf(path, sizeof(path), "%s/sub/whistle.yaml", tmp);
    cr_assert_eq(chdir("/"), 0);
    cr_assert_eq(load_path(path, &cfg), 0, "%s", out);
    snprintf(want, sizeof(want), "%s/sub/../var/w.db", tmp);
    cr_assert_str_eq(cfg->database, want);
    cr_assert_str_eq(cfg->workflows, "/abs/wf");
    snprintf(want, sizeof(want), "%s/sub/cal/cn.yaml", tmp);
    cr_assert_str_eq(wh_config_calendar(cfg, "workdays"), want);
    cr_assert_str_eq(cfg->tokens[0], "tok-from-file");
    wh_config_free(cfg);
}

Test(config, load_buffer)
{
    wh_diag_t *d = wh_diag_new();
    wh_config_t *cfg = NULL;
    const char text[] = MINIMAL "    parent: nowhere\n";

    cr_assert_eq(wh_config_load_buffer("mem.yaml", MINIMAL, strlen(MINIMAL), d, &cfg), 0);
    cr_assert_eq(cfg->dir.n, 1);
    wh_config_free(cfg);
    cr_assert_eq(wh_config_load_buffer("mem.yaml", text, strlen(text), d, &cfg), WH_EPARSE);
    cr_assert_null(cfg);
    cr_assert_eq(wh_diag_count(d), 1);
    cr_assert_str_eq(wh_diag_get(d, 0)->msg, "unknown parent 'nowhere'");
    wh_diag_free(d);
}

Test(config, free_null)
{
    wh_config_free(NULL);
}

/* ---- one test per class of error ---- */

Test(config, unknown_keys)
{
    expect_bad("lisen: 1\n" HEAD "webhooks: { retries: 3 }\nactions: { tll: 1d }\n"
               "open311: { id: x }\norgs:\n" ORG_A "    colour: red\n"
               "    webhook: { url: 'http://h/x', sekret: s }\n",
               "whistle.yaml:1:1: error: unknown key 'lisen'\n"
               "whistle.yaml:4:13: error: unknown key 'retries' in webhooks\n"
               "whistle.yaml:5:12: error: unknown key 'tll' in actions\n"
               "whistle.yaml:6:12: error: unknown key 'id' in open311\n"
               "whistle.yaml:11:5: error: unknown key 'colour' in org\n"
               "whistle.yaml:12:14: error: webhook needs one of secret, secret_env or "
               "secret_file\n"
               "whistle.yaml:12:35: error: unknown key 'sekret' in webhook\n");
}

Test(config, wrong_types)
{
    expect_bad("listen: [1]\ndatabase: {a: b}\nworkflows: wf\ntimezone: []\n"
               "calendars: [a]\nwebhooks: 5\nactions: { ttl: [1d] }\norgs: {a: b}\n",
               "whistle.yaml:1:9: error: listen must be a string\n"
               "whistle.yaml:2:11: error: database must be a string\n"
               "whistle.yaml:4:11: error: timezone must be a string\n"
               "whistle.yaml:5:12: error: calendars must be a mapping\n"
               "whistle.yaml:6:11: error: webhooks must be a mapping\n"
               "whistle.yaml:7:17: error: actions.ttl must be a string\n"
               "whistle.yaml:8:7: error: orgs must be a sequence\n");
}

Test(config, not_a_mapping_and_empty)
{
    expect_bad("- a\n", "whistle.yaml:1:1: error: the config must be a mapping\n");
    expect_bad("", "whistle.yaml: error: empty config file\n");
}

Test(config, missing_required)
{
    expect_bad("listen: 127.0.0.1:1\n", "whistle.yaml:1:1: error: missing key 'database'\n"
                                        "whistle.yaml:1:1: error: missing key 'workflows'\n"
                                        "whistle.yaml:1:1: error: missing key 'orgs'\n");
    expect_bad(HEAD "orgs: []\n", "whistle.yaml:3:7: error: orgs must not be empty\n");
    expect_bad(HEAD "orgs:\n  - parent: a\n", "whistle.yaml:4:5: error: missing key 'id' in org\n"
                                              "whistle.yaml:4:5: error: missing key 'name' in org\n"
                                              "whistle.yaml:4:5: error: missing key 'kind' in org\n"
                                              "whistle.yaml:4:13: error: unknown parent 'a'\n");
}

Test(config, listen)
{
    static const char *const bad[] = { "8080",       "example.com:80", "127.0.0.1",
                                       "127.0.0.1:", "::1:80",         "[::1]80",
                                       "[nope]:80",  "1.2.3:80",       "127.0.0.1:8o" };
    char text[256];

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        snprintf(text, sizeof(text), "listen: '%s'\n" MINIMAL, bad[i]);
        expect_bad(text, "whistle.yaml:1:9: error: listen must be HOST:PORT with an IPv4 "
                         "address, localhost or [IPv6]\n");
    }
    expect_bad("listen: 127.0.0.1:0\n" MINIMAL,
               "whistle.yaml:1:9: error: listen port must be between 1 and 65535\n");
    expect_bad("listen: 127.0.0.1:65536\n" MINIMAL,
               "whistle.yaml:1:9: error: listen port must be between 1 and 65535\n");
    expect_bad("listen: 127.0.0.1:123456\n" MINIMAL,
               "whistle.yaml:1:9: error: listen port must be between 1 and 65535\n");
}

Test(config, public_url)
{
    static const char msg[] = "whistle.yaml:1:13: error: public_url must be an http:// or "
                              "https:// URL without query or fragment\n";
    expect_bad("public_url: ftp://example.org\n" MINIMAL, msg);
    expect_bad("public_url: example.org\n" MINIMAL, msg);
    expect_bad("public_url: http://\n" MINIMAL, msg);
    expect_bad("public_url: http://x.org/?a=1\n" MINIMAL, msg);
}

Test(config, empty_paths)
{
    expect_bad("database: ''\nworkflows: wf\norgs:\n" ORG_A,
               "whistle.yaml:1:11: error: database must not be empty\n");
}

Test(config, timezone)
{
    expect_bad("timezone: Mars/Olympus_Mons\n" MINIMAL,
               "whistle.yaml:1:11: error: unknown time zone 'Mars/Olympus_Mons'\n");
}

Test(config, calendars)
{
    put("cn.yaml", "x: 1\n");
    expect_bad(
        "calendars:\n  workdays: missing.yaml\n  Bad_Name: cn.yaml\n  ok: cn.yaml\n" MINIMAL,
        "whistle.yaml:2:13: error: cannot read calendar file 'missing.yaml': No such "
        "file or directory\n"
        "whistle.yaml:3:3: error: calendar name 'Bad_Name' must be 1-64 characters of [a-z0-9-]\n");
}

Test(config, durability)
{
    expect_bad("durability: off\n" MINIMAL,
               "whistle.yaml:1:13: error: durability must be full or normal\n");
}

Test(config, durations)
{
    expect_bad("webhooks:\n"
               "  timeout: 3 workdays\n"
               "  retry: [5s, 0, 2 weeks, -1m, 1workhour]\n"
               "  max_connections_per_host: 0\n"
               "actions: { ttl: 7 }\n" MINIMAL,
               "whistle.yaml:2:12: error: webhooks.timeout must be wall-clock time (s, m, h, "
               "d), not working time\n"
               "whistle.yaml:3:15: error: webhooks.retry must be greater than 0\n"
               "whistle.yaml:3:18: error: webhooks.retry '2 weeks' is not a duration: unknown "
               "unit (use s, m, h, d, workdays or workhours)\n"
               "whistle.yaml:3:27: error: webhooks.retry '-1m' is not a duration: a negative "
               "duration is not allowed here\n"
               "whistle.yaml:3:32: error: webhooks.retry must be wall-clock time (s, m, h, d), "
               "not working time\n"
               "whistle.yaml:4:29: error: webhooks.max_connections_per_host must be between 1 "
               "and 1000\n"
               "whistle.yaml:5:17: error: actions.ttl '7' is not a duration: a duration needs "
               "a unit (s, m, h, d, workdays, workhours)\n");
    expect_bad("webhooks: { timeout: 0, max_connections_per_host: many, retry: 5s }\n"
               "actions: { ttl: 999999999d }\n" MINIMAL,
               "whistle.yaml:1:22: error: webhooks.timeout must be greater than 0\n"
               "whistle.yaml:1:51: error: webhooks.max_connections_per_host must be an "
               "integer\n"
               "whistle.yaml:1:64: error: webhooks.retry must be a sequence\n"
               "whistle.yaml:2:17: error: actions.ttl '999999999d' is too large\n");
}

Test(config, org_ids)
{
    expect_bad(
        HEAD "orgs:\n" ORG_A "  - { id: Fire_Brigade, name: F, kind: department }\n"
             "  - { id: system, name: S, kind: department }\n"
             "  - { id: supervisors, name: S, kind: supervisor }\n"
             "  - { id: department, name: S, kind: department }\n"
             "  - { id: a, name: A2, kind: street }\n",
        "whistle.yaml:7:11: error: org id 'Fire_Brigade' must be 1-64 characters of [a-z0-9-]\n"
        "whistle.yaml:8:11: error: org id 'system' is reserved (a role or kind name)\n"
        "whistle.yaml:9:11: error: org id 'supervisors' is reserved (a role or kind "
        "name)\n"
        "whistle.yaml:10:11: error: org id 'department' is reserved (a role or kind "
        "name)\n"
        "whistle.yaml:11:11: error: duplicate org id 'a' (first at line 4)\n");
}

Test(config, org_kind_name_parent)
{
    expect_bad(HEAD "orgs:\n"
                    "  - { id: a, name: '', kind: ministry }\n"
                    "  - { id: b, name: B, kind: street, parent: nobody }\n",
               "whistle.yaml:4:20: error: org name must not be empty\n"
               "whistle.yaml:4:30: error: unknown org kind 'ministry' (street, community, "
               "department, district, joint-meeting, supervisor)\n"
               "whistle.yaml:5:45: error: unknown parent 'nobody'\n");
}

Test(config, parent_loop_reported_once)
{
    expect_bad(HEAD "orgs:\n"
                    "  - { id: x, name: X, kind: department, parent: b }\n"
                    "  - { id: a, name: A, kind: district, parent: b }\n"
                    "  - { id: b, name: B, kind: district, parent: c }\n"
                    "  - { id: c, name: C, kind: joint-meeting, parent: a }\n"
                    "  - { id: s, name: S, kind: supervisor, parent: s }\n",
               "whistle.yaml:5:47: error: parent loop: a -> b -> c -> a\n"
               "whistle.yaml:8:49: error: parent loop: s -> s\n");
}

Test(config, token_env)
{
    setenv("WH_TEST_TOKEN_EMPTY", "", 1);
    setenv("WH_TEST_TOKEN_OK", "env-token-1", 1);
    unsetenv("WH_TEST_TOKEN_UNSET");
    expect_bad(HEAD "orgs:\n"
                    "  - { id: a, name: A, kind: street, token_env: WH_TEST_TOKEN_UNSET }\n"
                    "  - { id: b, name: B, kind: street, token_env: WH_TEST_TOKEN_EMPTY }\n"
                    "  - { id: c, name: C, kind: street, token_env: WH_TEST_TOKEN_OK }\n",
               "whistle.yaml:4:48: error: environment variable 'WH_TEST_TOKEN_UNSET' is not "
               "set\n"
               "whistle.yaml:5:48: error: environment variable 'WH_TEST_TOKEN_EMPTY' is "
               "empty\n");

    wh_config_t *cfg = load_good(MINIMAL "    token_env: WH_TEST_TOKEN_OK\n");
    cr_assert_str_eq(cfg->tokens[0], "env-token-1");
    cr_assert(cfg->dir.orgs[0].has_token);
    wh_config_free(cfg);
}

Test(config, token_file)
{
    char big[5000];
    wh_config_t *cfg;

    put("a.token", "file-token-a \t\r\n\n");
    cfg = load_good(MINIMAL "    token_file: a.token\n");
    cr_assert_str_eq(cfg->tokens[0], "file-token-a");
    wh_config_free(cfg);

    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    put("big.token", big);
    put("empty.token", " \n");
    expect_bad(HEAD "orgs:\n"
                    "  - { id: a, name: A, kind: street, token_file: missing.token }\n"
                    "  - { id: b, name: B, kind: street, token_file: big.token }\n"
                    "  - { id: c, name: C, kind: street, token_file: empty.token }\n",
               "whistle.yaml:4:49: error: cannot read token file 'missing.token': No such file "
               "or directory\n"
               "whistle.yaml:5:49: error: token file 'big.token' is larger than 4096 bytes\n"
               "whistle.yaml:6:49: error: token file 'empty.token' is empty\n");
}

Test(config, token_sources_and_format)
{
    setenv("WH_TEST_TOKEN_OK", "env-token-1", 1);
    expect_bad(HEAD "orgs:\n"
                    "  - { id: a, name: A, kind: street, token: t1, token_env: WH_TEST_TOKEN_OK }\n"
                    "  - { id: b, name: B, kind: street, token: 'has space' }\n"
                    "  - { id: c, name: C, kind: street, token: '' }\n",
               "whistle.yaml:4:48: error: give only one of token, token_env or token_file\n"
               "whistle.yaml:5:44: error: token must be printable ASCII without spaces\n"
               "whistle.yaml:6:44: error: token must not be empty\n");
}

Test(config, shared_token_never_printed)
{
    setenv("WH_TEST_TOKEN_SHARED", "s3cr3t-shared-token", 1);
    put("c.token", "s3cr3t-shared-token\n");
    expect_bad(HEAD "orgs:\n"
                    "  - { id: a, name: A, kind: street, token: s3cr3t-shared-token }\n"
                    "  - { id: b, name: B, kind: street, token_env: WH_TEST_TOKEN_SHARED }\n"
                    "  - { id: c, name: C, kind: street, token_file: c.token }\n"
                    "  - { id: d, name: D, kind: street, token: s3cr3t-other }\n",
               "whistle.yaml:5:48: error: org 'b' has the same token as org 'a' (line 4)\n"
               "whistle.yaml:6:49: error: org 'c' has the same token as org 'a' (line 4)\n");
    cr_assert_null(strstr(out, "s3cr3t"));
}

/* base64 of 32 bytes 0x00..0x1f, padded and unpadded; base64 of 16 bytes. */
#define SECRET32       "whsec_AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
#define SECRET32_NOPAD "whsec_AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8"
/* base64 of 32 bytes 0x20..0x3f, unpadded. */
#define SECRET32B_NOPAD "whsec_ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8"
#define SECRET16        "whsec_AAECAwQFBgcICQoLDA0ODw=="

Test(config, webhook_secret_decodes)
{
    wh_config_t *cfg;

    setenv("WH_TEST_WHSEC", SECRET32B_NOPAD, 1);
    put("b.secret", "whsec_AAECAwQFBgcICQoLDA0ODxAREhMUFRYX\n"); /* exactly 24 bytes */
    cfg = load_good(HEAD "orgs:\n"
                         "  - id: a\n    name: A\n    kind: department\n"
                         "    webhook: { url: 'http://127.0.0.1:9/a', secret: '" SECRET32 "' }\n"
                         "  - id: b\n    name: B\n    kind: department\n"
                         "    webhook: { url: 'https://h.example/b', secret_file: b.secret }\n"
                         "  - id: c\n    name: C\n    kind: department\n"
                         "    webhook: { url: 'http://h/c', secret_env: WH_TEST_WHSEC }\n");
    cr_assert_eq(cfg->webhooks[0].secret_len, 32);
    for (int i = 0; i < 32; i++)
        cr_assert_eq(cfg->webhooks[0].secret[i], i);
    cr_assert_eq(cfg->webhooks[1].secret_len, 24);
    cr_assert_eq(cfg->webhooks[1].secret[23], 23);
    cr_assert(cfg->dir.orgs[1].has_webhook);
    cr_assert_str_eq(cfg->webhooks[1].url, "https://h.example/b");
    cr_assert_eq(cfg->webhooks[2].secret_len, 32);
    cr_assert_eq(cfg->webhooks[2].secret[0], 0x20);
    cr_assert_eq(cfg->webhooks[2].secret[31], 0x3f);
    wh_config_free(cfg);
}

Test(config, bad_whsec)
{
    static const char msg[] =
        "error: webhook secret must be 'whsec_' followed by base64 of at least 24 bytes\n";
    static const char *const bad[] = {
        SECRET32 + 6,                                           /* no prefix */
        SECRET16,                                               /* 16 bytes */
        "whsec_",                                               /* nothing */
        "whsec_AAEC!wQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",   /* not base64 */
        "whsec_AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8===", /* padding */
        "whsec_AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8A=",  /* 49 characters */
        "whsec_AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8AA",  /* 45: a lone char */
    };
    char text[512], want[256];

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        snprintf(text, sizeof(text),
                 MINIMAL "    webhook:\n      url: http://h/a\n      secret: '%s'\n", bad[i]);
        snprintf(want, sizeof(want), "whistle.yaml:9:15: %s", msg);
        expect_bad(text, want);
        cr_assert_null(strstr(out, "AAEC"));
    }
}

Test(config, shared_secret_and_webhook_url)
{
    setenv("WH_TEST_WHSEC", SECRET32_NOPAD, 1);
    expect_bad(HEAD "orgs:\n"
                    "  - { id: a, name: A, kind: department,\n"
                    "      webhook: { url: 'http://h/a', secret: '" SECRET32 "' } }\n"
                    "  - { id: b, name: B, kind: department,\n"
                    "      webhook: { url: 'ftp://h/b', secret_env: WH_TEST_WHSEC } }\n"
                    "  - { id: c, name: C, kind: department, webhook: { secret: x } }\n"
                    "  - { id: d, name: D, kind: department, webhook: http://h/d }\n",
               "whistle.yaml:7:23: error: webhook url must be an http:// or https:// URL\n"
               "whistle.yaml:7:48: error: org 'b' has the same webhook secret as org 'a' "
               "(line 5)\n"
               "whistle.yaml:8:50: error: missing key 'url' in webhook\n"
               "whistle.yaml:8:60: error: webhook secret must be 'whsec_' followed by base64 "
               "of at least 24 bytes\n"
               "whistle.yaml:9:50: error: webhook must be a mapping\n");
    cr_assert_null(strstr(out, "AAEC"));
}

Test(config, several_errors_all_reported)
{
    unsetenv("WH_TEST_TOKEN_UNSET");
    load_bad("listen: nowhere\n"
             "database: db\n"
             "timezone: Nowhere/Town\n"
             "durability: sometimes\n"
             "webhooks: { timeout: 1 workday }\n"
             "orgs:\n"
             "  - { id: a, name: A, kind: street, parent: b, token_env: WH_TEST_TOKEN_UNSET }\n"
             "  - { id: b, name: B, kind: bureau, parent: a }\n"
             "  - { id: a, name: A, kind: street, colour: blue }\n");
    cr_assert_str_eq(
        out, "whistle.yaml:1:1: error: missing key 'workflows'\n"
             "whistle.yaml:1:9: error: listen must be HOST:PORT with an IPv4 address, "
             "localhost or [IPv6]\n"
             "whistle.yaml:3:11: error: unknown time zone 'Nowhere/Town'\n"
             "whistle.yaml:4:13: error: durability must be full or normal\n"
             "whistle.yaml:5:22: error: webhooks.timeout must be wall-clock time (s, m, h, d), "
             "not working time\n"
             "whistle.yaml:7:45: error: parent loop: a -> b -> a\n"
             "whistle.yaml:7:59: error: environment variable 'WH_TEST_TOKEN_UNSET' is not set\n"
             "whistle.yaml:8:29: error: unknown org kind 'bureau' (street, community, "
             "department, district, joint-meeting, supervisor)\n"
             "whistle.yaml:9:11: error: duplicate org id 'a' (first at line 7)\n"
             "whistle.yaml:9:37: error: unknown key 'colour' in org\n");
}

#define DATA_FILE WH_SOURCE_DIR "/tests/data/config/several-errors.yaml"
#define AT(pos)   DATA_FILE ":" pos ": error: "

Test(config, data_file_several_errors)
{
    wh_config_t *cfg = (wh_config_t *)1;
    /* clang-format off */
    static const char want[] =
        AT("3:9") "listen port must be between 1 and 65535\n"
        AT("6:13") "durability must be full or normal\n"
        AT("8:12") "webhooks.timeout must be wall-clock time (s, m, h, d), not working time\n"
        AT("17:13") "parent loop: dept-b -> dept-c -> dept-b\n"
        AT("18:12") "org 'dept-b' has the same token as org 'street-a' (line 13)\n"
        AT("21:15") "webhook secret must be 'whsec_' followed by base64 of at least 24 bytes\n"
        AT("26:16") "environment variable 'WHISTLE_TEST_UNSET_TOKEN' is not set\n"
        AT("27:9") "duplicate org id 'street-a' (first at line 10)\n"
        AT("30:13") "unknown parent 'nobody'\n";
    /* clang-format on */

    unsetenv("WHISTLE_TEST_UNSET_TOKEN");
    cr_assert_eq(load_path(DATA_FILE, &cfg), WH_EPARSE);
    cr_assert_null(cfg);
    cr_assert_str_eq(out, want);
    cr_assert_null(strstr(out, "test-token-shared"));
}

/* Found by fuzz/fuzz_config.c: a duplicate key, which the YAML layer reports
 * without failing, used to be printed by `validate` yet accepted by `serve`
 * and by wh_config_load_buffer. */
Test(config, duplicate_key_refuses_file)
{
    expect_bad("listen: 127.0.0.1:8080\n"
               "listen: 127.0.0.1:9090\n"
               "database: w.db\n"
               "workflows: wf\n"
               "orgs:\n"
               "  - id: a\n"
               "    name: A\n"
               "    kind: street\n"
               "    token: t\n",
               "whistle.yaml:2:1: error: duplicate key 'listen' (first at line 1)\n");
}

Test(config, duplicate_key_refuses_buffer)
{
    static const char text[] = "listen: 127.0.0.1:8080\n"
                               "database: w.db\n"
                               "workflows: wf\n"
                               "orgs:\n"
                               "  - id: a\n"
                               "    name: A\n"
                               "    name: B\n"
                               "    kind: street\n"
                               "    token: t\n";
    wh_diag_t *d = wh_diag_new();
    wh_config_t *cfg = (wh_config_t *)1;
    char line[256];

    cr_assert_eq(wh_config_load_buffer("dir/whistle.yaml", text, strlen(text), d, &cfg), WH_EPARSE);
    cr_assert_null(cfg);
    cr_assert_eq(wh_diag_count(d), 1);
    wh_diag_format(d, 0, line, sizeof(line));
    cr_assert_str_eq(line, "dir/whistle.yaml:7:5: error: duplicate key 'name' (first at line 6)");
    wh_diag_free(d);
}
