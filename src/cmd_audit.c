/* whistle audit [-c whistle.yaml] [--from D] [--to D] [--format table|csv|json]
 * (SPEC §6, §7): department scorecards from the database, opened read-only
 * so the command may run beside a live server. wh_cmd_audit_answer is the
 * same computation for the API's audit routes. Definitions: docs/audit.md. */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "engine/audit.h"
#include "engine/calendar.h"
#include "engine/diag.h"
#include "engine/error.h"
#include "engine/jcs.h"
#include "engine/store.h"
#include "src/cmd.h"
#include "src/config.h"

#define AUDIT_DEFAULT_CONFIG "whistle.yaml"
#define CELL                 32

/* What an audit reads besides the workflows: the zone, the calendars and a
 * read-only connection. */
typedef struct {
    wh_tz_t *tz;
    wh_calendar_t **cals;
    wh_engine_calendar_t *ecals;
    size_t ncals;
    wh_store_t *store;
} env_t;

static void env_close(env_t *env)
{
    for (size_t i = 0; i < env->ncals; i++)
        wh_calendar_free(env->cals[i]);
    free(env->cals);
    free(env->ecals);
    wh_store_close(env->store);
    wh_tz_free(env->tz);
    memset(env, 0, sizeof(*env));
}

/* Calendars that fail to load are skipped: the audit then counts workday
 * deadlines without holidays, which the breached rows usually override. */
static int env_load(const wh_config_t *cfg, env_t *env, char *err, size_t errlen)
{
    wh_diag_t *diag = wh_diag_new();
    int rc = WH_ENOMEM;

    env->cals = calloc(cfg->ncalendars + 1, sizeof(*env->cals));
    env->ecals = calloc(cfg->ncalendars + 1, sizeof(*env->ecals));
    if (diag == NULL || env->cals == NULL || env->ecals == NULL)
        goto out;
    if ((rc = wh_tz_load(cfg->timezone, &env->tz)) != 0) {
        snprintf(err, errlen, "unknown time zone '%s'", cfg->timezone);
        goto out;
    }
    for (size_t i = 0; i < cfg->ncalendars; i++) {
        wh_calendar_t *cal = NULL;
        if (wh_calendar_load(cfg->calendars[i].path, cfg->timezone, diag, &cal) != 0)
            continue;
        env->cals[env->ncals] = cal;
        env->ecals[env->ncals++] = (wh_engine_calendar_t){ cfg->calendars[i].name, cal };
    }
    rc = 0;
out:
    wh_diag_free(diag);
    return rc;
}

/* The zone and calendars from e, or loaded; and a read-only connection. */
static int env_open(const wh_cmd_audit_env_t *e, env_t *env, char *err, size_t errlen)
{
    const wh_config_t *cfg = e->cfg;
    int rc = 0;

    memset(env, 0, sizeof(*env));
    if (e->tz == NULL)
        rc = env_load(cfg, env, err, errlen);
    if (rc == 0)
        rc = wh_store_open(cfg->database, cfg->durability == WH_DURABILITY_FULL, true, &env->store,
                           err, errlen);
    if (rc != 0)
        env_close(env);
    return rc;
}

static int window(const char *from_s, const char *to_s, const wh_tz_t *tz, int64_t now,
                  int64_t *from, int64_t *to, char *err, size_t errlen)
{
    *from = wh_audit_month_start(now, tz);
    *to = now;
    if (from_s != NULL && wh_audit_parse_time(from_s, tz, from) != 0) {
        snprintf(err, errlen, "from: '%.64s' is not YYYY-MM-DD or an RFC 3339 time", from_s);
        return WH_EPARSE;
    }
    if (to_s != NULL && wh_audit_parse_time(to_s, tz, to) != 0) {
        snprintf(err, errlen, "to: '%.64s' is not YYYY-MM-DD or an RFC 3339 time", to_s);
        return WH_EPARSE;
    }
    if (*to < *from) {
        snprintf(err, errlen, "to is before from");
        return WH_EPARSE;
    }
    return 0;
}

int wh_cmd_audit_answer(const wh_cmd_audit_env_t *e, const char *from_s, const char *to_s,
                        int format, bool bom, char **body, size_t *len, char *err, size_t errlen)
{
    env_t env;
    int64_t now = (int64_t)time(NULL), from, to;
    json_t *rep = NULL;
    int rc;

    *body = NULL;
    *len = 0;
    if ((rc = env_open(e, &env, err, errlen)) != 0)
        return rc == WH_ETZ || rc == WH_ENOMEM ? rc : WH_ESTORAGE;
    const wh_tz_t *tz = e->tz ? e->tz : env.tz;
    if ((rc = window(from_s, to_s, tz, now, &from, &to, err, errlen)) != 0)
        goto out;
    wh_audit_options_t o = { .store = env.store,
                             .dir = &e->cfg->dir,
                             .workflows = e->wfs,
                             .nworkflows = e->nwfs,
                             .calendars = e->tz ? e->cals : env.ecals,
                             .ncalendars = e->tz ? e->ncals : env.ncals,
                             .tz = tz,
                             .now = now };
    if (format == WH_AUDIT_CSV) {
        rc = wh_audit_tickets_csv(&o, from, to, bom, body, len);
    } else if ((rc = wh_audit_departments(&o, from, to, &rep)) == 0) {
        *body = json_dumps(rep, JSON_INDENT(2) | JSON_PRESERVE_ORDER | WH_JSON_REAL);
        *len = *body ? strlen(*body) : 0;
        rc = *body ? 0 : WH_ENOMEM;
    }
    if (rc != 0 && err[0] == '\0')
        snprintf(err, errlen, "%s", wh_strerror(rc));
out:
    json_decref(rep);
    env_close(&env);
    return rc;
}

/* ---- off the loop's thread ---- */

typedef struct {
    uv_work_t work;
    wh_cmd_audit_env_t env;
    char *from, *to;
    int format;
    bool bom;
    wh_cmd_audit_cb cb;
    void *arg;
    int rc;
    char *body;
    size_t len;
    char err[256];
} audit_job_t;

static void job_free(audit_job_t *j)
{
    free(j->from);
    free(j->to);
    free(j);
}

static void job_run(uv_work_t *w)
{
    audit_job_t *j = w->data;
    j->rc = wh_cmd_audit_answer(&j->env, j->from, j->to, j->format, j->bom, &j->body, &j->len,
                                j->err, sizeof(j->err));
}

static void job_done(uv_work_t *w, int status)
{
    audit_job_t *j = w->data;
    if (status != 0 && j->rc == 0) { /* cancelled: never ran */
        j->rc = WH_ECLOSED;
        snprintf(j->err, sizeof(j->err), "%s", wh_strerror(j->rc));
    }
    j->cb(j->rc, j->body, j->len, j->err, j->arg);
    job_free(j);
}

int wh_cmd_audit_queue(uv_loop_t *loop, const wh_cmd_audit_env_t *env, const char *from_s,
                       const char *to_s, int format, bool bom, wh_cmd_audit_cb cb, void *arg)
{
    audit_job_t *j = env->tz != NULL ? calloc(1, sizeof(*j)) : NULL;
    if (j == NULL)
        return WH_ENOMEM;
    *j = (audit_job_t){ .env = *env, .format = format, .bom = bom, .cb = cb, .arg = arg };
    j->work.data = j;
    if ((from_s != NULL && (j->from = strdup(from_s)) == NULL) ||
        (to_s != NULL && (j->to = strdup(to_s)) == NULL)) {
        job_free(j);
        return WH_ENOMEM;
    }
    if (uv_queue_work(loop, &j->work, job_run, job_done) != 0) {
        job_free(j);
        return WH_EIO;
    }
    return 0;
}

/* ---- the table ---- */

static void pad(FILE *out, const char *s, size_t width, bool right)
{
    size_t w = wh_audit_display_width(s);
    if (right)
        for (; w < width; w++)
            fputc(' ', out);
    fputs(s, out);
    if (!right)
        for (; w < width; w++)
            fputc(' ', out);
}

static void cell_rate(json_t *v, char buf[CELL])
{
    if (json_is_number(v))
        snprintf(buf, CELL, "%.1f%%", json_number_value(v) * 100.0);
    else
        snprintf(buf, CELL, "-");
}

static void cell_secs(json_t *v, char buf[CELL])
{
    long long s = json_integer_value(v);
    if (!json_is_integer(v))
        snprintf(buf, CELL, "-");
    else if (s >= 86400)
        snprintf(buf, CELL, "%lldd%02lldh", s / 86400, s % 86400 / 3600);
    else
        snprintf(buf, CELL, "%lldh%02lldm", s / 3600, s % 3600 / 60);
}

#define NCOLS 13
static const char *const heads[NCOLS] = { "部门",        "assigned", "reported", "on time",
                                          "响应率",      "resolved", "on time",  "解决率",
                                          "满意率",      "disputed", "reopened", "overdue",
                                          "close median" };

static void row_cells(json_t *c, char cells[NCOLS][CELL], const char **name)
{
    static const char *const ints[] = { "assigned", "reported", "reported_on_time" };
    *name = json_string_value(json_object_get(c, "name"));
    for (int i = 0; i < 3; i++)
        snprintf(cells[1 + i], CELL, "%lld",
                 (long long)json_integer_value(json_object_get(c, ints[i])));
    cell_rate(json_object_get(c, "response_rate"), cells[4]);
    snprintf(cells[5], CELL, "%lld", (long long)json_integer_value(json_object_get(c, "resolved")));
    snprintf(cells[6], CELL, "%lld",
             (long long)json_integer_value(json_object_get(c, "resolved_on_time")));
    cell_rate(json_object_get(c, "resolve_rate"), cells[7]);
    cell_rate(json_object_get(c, "satisfaction_rate"), cells[8]);
    snprintf(cells[9], CELL, "%lld", (long long)json_integer_value(json_object_get(c, "disputed")));
    snprintf(cells[10], CELL, "%lld",
             (long long)json_integer_value(json_object_get(c, "reopened")));
    snprintf(cells[11], CELL, "%lld",
             (long long)json_integer_value(json_object_get(c, "overdue_now")));
    cell_secs(json_object_get(json_object_get(c, "close_seconds"), "median"), cells[12]);
}

static void print_table(json_t *rep, FILE *out)
{
    json_t *deps = json_object_get(rep, "departments");
    size_t width[NCOLS];
    char cells[NCOLS][CELL];
    const char *name;

    for (int j = 0; j < NCOLS; j++)
        width[j] = wh_audit_display_width(heads[j]);
    for (size_t i = 0; i < json_array_size(deps); i++) {
        row_cells(json_array_get(deps, i), cells, &name);
        if (wh_audit_display_width(name) > width[0])
            width[0] = wh_audit_display_width(name);
        for (int j = 1; j < NCOLS; j++)
            if (strlen(cells[j]) > width[j])
                width[j] = strlen(cells[j]);
    }
    fprintf(out, "audit %s .. %s\n", json_string_value(json_object_get(rep, "from")),
            json_string_value(json_object_get(rep, "to")));
    for (int j = 0; j < NCOLS; j++) {
        pad(out, heads[j], width[j], j > 0);
        fputs(j + 1 < NCOLS ? "  " : "\n", out);
    }
    for (size_t i = 0; i < json_array_size(deps); i++) {
        row_cells(json_array_get(deps, i), cells, &name);
        for (int j = 0; j < NCOLS; j++) {
            pad(out, j == 0 ? name : cells[j], width[j], j > 0);
            fputs(j + 1 < NCOLS ? "  " : "\n", out);
        }
    }
}

/* ---- the command ---- */

static void usage(FILE *out)
{
    fputs("usage: whistle audit [-c whistle.yaml] [--from D] [--to D] [--format table|csv|json]\n\n"
          "Department scorecards for the tickets raised in [from, to), read from the\n"
          "database the config names (opened read-only). D is YYYY-MM-DD (midnight in\n"
          "the config's timezone) or an RFC 3339 time; from defaults to the start of\n"
          "this month, to to now. json is the API's answer, csv one row per ticket;\n"
          "docs/audit.md defines every figure and column.\n\n"
          "  -c, --config FILE  the server config (default ./whistle.yaml)\n"
          "  --format F         table (default), csv or json\n"
          "  -h, --help         show this help\n",
          out);
}

static int usage_error(const char *msg, const char *arg)
{
    fprintf(stderr, "whistle audit: %s '%s'\n", msg, arg);
    fputs("usage: whistle audit [-c whistle.yaml] [--from D] [--to D] [--format "
          "table|csv|json] (see --help)\n",
          stderr);
    return WH_EXIT_USAGE;
}

typedef struct {
    const char *config, *from, *to, *format;
} args_t;

static int parse_args(int argc, char **argv, args_t *a)
{
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i], **slot = NULL;
        if (strcmp(arg, "-h") == 0 || strcmp(arg, "--help") == 0)
            return -1;
        if (strcmp(arg, "-c") == 0 || strcmp(arg, "--config") == 0)
            slot = &a->config;
        else if (strcmp(arg, "--from") == 0)
            slot = &a->from;
        else if (strcmp(arg, "--to") == 0)
            slot = &a->to;
        else if (strcmp(arg, "--format") == 0)
            slot = &a->format;
        else
            return usage_error(arg[0] == '-' ? "unknown option" : "unexpected argument", arg);
        if (i + 1 >= argc)
            return usage_error("missing value after", arg);
        *slot = argv[++i];
    }
    if (strcmp(a->format, "table") != 0 && strcmp(a->format, "csv") != 0 &&
        strcmp(a->format, "json") != 0)
        return usage_error("unknown format", a->format);
    return 0;
}

static void free_workflows(wh_workflow_t **wfs, size_t n)
{
    for (size_t i = 0; i < n; i++)
        wh_workflow_free(wfs[i]);
    free(wfs);
}

static int yaml_file(const struct dirent *d)
{
    size_t n = strlen(d->d_name);
    return d->d_name[0] != '.' && n > 5 && strcmp(d->d_name + n - 5, ".yaml") == 0;
}

/* Every workflow file of the folder; invalid ones are reported and skipped
 * (their tickets then count without deadlines and audit maps). */
static wh_workflow_t **load_workflows(const wh_config_t *cfg, wh_diag_t *diag, size_t *n)
{
    struct dirent **names = NULL;
    int count = scandir(cfg->workflows, &names, yaml_file, alphasort);
    wh_workflow_t **wfs = calloc(count > 0 ? (size_t)count : 1, sizeof(*wfs));
    char path[4096];

    *n = 0;
    for (int i = 0; i < count; i++) {
        wh_workflow_t *wf = NULL;
        snprintf(path, sizeof(path), "%s/%s", cfg->workflows, names[i]->d_name);
        if (wfs != NULL && wh_workflow_load(path, &cfg->dir, diag, &wf) == 0)
            wfs[(*n)++] = wf;
        free(names[i]);
    }
    free(names);
    return wfs;
}

static int run_audit(const wh_config_t *cfg, const args_t *a, wh_diag_t *diag)
{
    size_t nwfs = 0, len = 0;
    wh_workflow_t **wfs = load_workflows(cfg, diag, &nwfs);
    char *body = NULL, err[512] = "";
    json_t *rep = NULL;
    struct stat st;
    int rc, format = strcmp(a->format, "csv") == 0 ? WH_AUDIT_CSV : WH_AUDIT_JSON;

    wh_diag_print(diag, stderr);
    if (stat(cfg->database, &st) != 0) {
        fprintf(stderr, "whistle audit: cannot read %s: %s\n", cfg->database, strerror(errno));
        free_workflows(wfs, nwfs);
        return WH_EXIT_INVALID;
    }
    wh_cmd_audit_env_t env = { .cfg = cfg, .wfs = (const wh_workflow_t *const *)wfs, .nwfs = nwfs };
    rc = wh_cmd_audit_answer(&env, a->from, a->to, format, false, &body, &len, err, sizeof(err));
    if (rc != 0)
        fprintf(stderr, "whistle audit: %s\n", err);
    else if (strcmp(a->format, "table") == 0 && (rep = json_loads(body, 0, NULL)) != NULL)
        print_table(rep, stdout);
    else
        fwrite(body, 1, len, stdout), fputs(format == WH_AUDIT_JSON ? "\n" : "", stdout);
    json_decref(rep);
    free(body);
    free_workflows(wfs, nwfs);
    return rc == 0 ? WH_EXIT_OK : rc == WH_EPARSE ? WH_EXIT_USAGE : WH_EXIT_INVALID;
}

int wh_cmd_audit(int argc, char **argv)
{
    args_t a = { AUDIT_DEFAULT_CONFIG, NULL, NULL, "table" };
    wh_config_t *cfg = NULL;
    wh_diag_t *diag;
    int rc = parse_args(argc, argv, &a);

    if (rc != 0) {
        if (rc < 0)
            usage(stdout);
        return rc < 0 ? WH_EXIT_OK : rc;
    }
    if ((diag = wh_diag_new()) == NULL)
        return WH_EXIT_INVALID;
    if (wh_config_load(a.config, diag, &cfg) != 0) {
        wh_diag_print(diag, stderr);
        if (wh_diag_errors(diag) == 0)
            fprintf(stderr, "whistle audit: cannot load %s\n", a.config);
        rc = WH_EXIT_INVALID;
    } else {
        rc = run_audit(cfg, &a, diag);
    }
    wh_config_free(cfg);
    wh_diag_free(diag);
    return rc;
}
