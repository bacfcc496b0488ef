/* whistle validate [-c whistle.yaml] FILE… (SPEC §7).
 *
 * Each FILE is told apart by its top-level keys (a workflow, a calendar or a
 * server config) and checked by its own loader; every problem of every file
 * is printed, so one run shows them all. With -c, workflows' org ids are
 * checked against the config's directory and its warnings are added. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/calendar.h"
#include "engine/diag.h"
#include "engine/error.h"
#include "engine/workflow.h"
#include "engine/ydoc.h"
#include "src/cmd.h"
#include "src/config.h"

typedef enum { KIND_UNKNOWN, KIND_WORKFLOW, KIND_CALENDAR, KIND_CONFIG } file_kind_t;

/* What is remembered of each valid workflow: the same name and version with
 * other content is an error, as it is when the server loads them. */
typedef struct {
    const char *path;
    char *name;
    int64_t version;
    char digest[65];
} seen_t;

typedef struct {
    wh_diag_t *diag;
    const wh_config_t *cfg;
    seen_t *seen;
    size_t nseen;
} run_t;

static void usage(FILE *out)
{
    fputs("usage: whistle validate [-c whistle.yaml] FILE...\n\n"
          "Checks workflow, calendar and config files and prints every problem as\n"
          "FILE:LINE:COL: error: MESSAGE. A file's kind comes from its top-level keys:\n"
          "workflow: (a workflow), workdays:/hours:/holidays: (a calendar), orgs:/listen:\n"
          "(a server config).\n\n"
          "  -c, --config FILE  check workflows' org ids against this config and warn\n"
          "                     about events no org can fire and targets without webhook\n"
          "  -h, --help         show this help\n\n"
          "Exit codes: 0 valid (warnings allowed), 1 invalid, 2 usage error.\n",
          out);
}

/* Copies the entries of from into to (used to keep the detection parse's
 * syntax errors without parsing the file twice for them). */
static void diag_move(wh_diag_t *to, wh_diag_t *from)
{
    for (size_t i = 0; i < wh_diag_count(from); i++) {
        const wh_diag_entry_t *e = wh_diag_get(from, i);
        if (e->level == WH_DIAG_ERROR)
            wh_diag_error(to, e->file, e->line, e->col, "%s", e->msg);
        else
            wh_diag_warning(to, e->file, e->line, e->col, "%s", e->msg);
    }
}

static file_kind_t kind_of(const wh_ynode_t *root)
{
    if (root == NULL || root->type != WH_YNODE_MAP)
        return KIND_UNKNOWN;
    if (wh_ynode_get(root, "workflow") != NULL)
        return KIND_WORKFLOW;
    if (wh_ynode_get(root, "workdays") != NULL || wh_ynode_get(root, "hours") != NULL ||
        wh_ynode_get(root, "holidays") != NULL)
        return KIND_CALENDAR;
    if (wh_ynode_get(root, "orgs") != NULL || wh_ynode_get(root, "listen") != NULL)
        return KIND_CONFIG;
    return KIND_UNKNOWN;
}

/* Parses the file once to see what it is. Returns -1 when it cannot be
 * parsed (the errors are in run->diag then). */
static int detect(run_t *run, const char *path, file_kind_t *kind)
{
    wh_diag_t *scratch = wh_diag_new();
    wh_ydoc_t *doc = NULL;
    int rc = -1;

    if (scratch == NULL) {
        wh_diag_error(run->diag, path, 0, 0, "out of memory");
        return -1;
    }
    if (wh_ydoc_load_file(path, scratch, &doc) != 0) {
        diag_move(run->diag, scratch);
        goto out;
    }
    *kind = kind_of(wh_ydoc_root(doc));
    if (*kind == KIND_UNKNOWN)
        wh_diag_error(run->diag, path, 0, 0,
                      "not a workflow (workflow:), calendar (workdays:, hours:, holidays:) "
                      "or config (orgs:, listen:) file");
    rc = *kind == KIND_UNKNOWN ? -1 : 0;
out:
    wh_ydoc_free(doc);
    wh_diag_free(scratch);
    return rc;
}

static void remember(run_t *run, const wh_workflow_t *wf, const char *path)
{
    seen_t *grown;

    for (size_t i = 0; i < run->nseen; i++) {
        const seen_t *s = &run->seen[i];
        if (strcmp(s->name, wf->name) != 0 || s->version != wf->version)
            continue;
        if (strcmp(s->digest, wf->digest) != 0)
            wh_diag_error(run->diag, path, 0, 0,
                          "workflow '%s' version %lld is also in %s with different content",
                          wf->name, (long long)wf->version, s->path);
        return;
    }
    grown = realloc(run->seen, (run->nseen + 1) * sizeof(*grown));
    if (grown == NULL || (grown[run->nseen].name = strdup(wf->name)) == NULL) {
        run->seen = grown != NULL ? grown : run->seen;
        wh_diag_error(run->diag, path, 0, 0, "out of memory");
        return;
    }
    run->seen = grown;
    grown[run->nseen].path = path;
    grown[run->nseen].version = wf->version;
    memcpy(grown[run->nseen].digest, wf->digest, sizeof(wf->digest));
    run->nseen++;
}

static void check_workflow(run_t *run, const char *path)
{
    const wh_orgdir_t *dir = run->cfg != NULL ? &run->cfg->dir : NULL;
    wh_workflow_t *wf = NULL;

    if (wh_workflow_load(path, dir, run->diag, &wf) != 0)
        return;
    if (run->cfg != NULL) {
        wh_workflow_check_orgs(wf, dir, run->diag);
        if (wh_config_calendar(run->cfg, wf->calendar) == NULL)
            wh_diag_warning(run->diag, path, 0, 0,
                            "calendar '%s' is not among the config's calendars", wf->calendar);
    }
    remember(run, wf, path);
    wh_workflow_free(wf);
}

static void check_file(run_t *run, const char *path)
{
    file_kind_t kind = KIND_UNKNOWN;
    wh_calendar_t *cal = NULL;
    wh_config_t *cfg = NULL;

    if (detect(run, path, &kind) != 0)
        return;
    switch (kind) {
    case KIND_WORKFLOW:
        check_workflow(run, path);
        break;
    case KIND_CALENDAR:
        wh_calendar_load(path, run->cfg != NULL ? run->cfg->timezone : NULL, run->diag, &cal);
        wh_calendar_free(cal);
        break;
    case KIND_CONFIG:
        wh_config_load(path, run->diag, &cfg);
        wh_config_free(cfg);
        break;
    case KIND_UNKNOWN:
        break;
    }
}

/* Parses the options; returns the index of the first FILE, or -1 after
 * printing a usage error, or 0 when --help was handled. */
static int parse_args(int argc, char **argv, const char **config)
{
    int i = 1;

    for (; i < argc && argv[i][0] == '-' && argv[i][1] != '\0'; i++) {
        if (strcmp(argv[i], "--") == 0)
            return i + 1;
        if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            usage(stdout);
            return 0;
        }
        if ((strcmp(argv[i], "-c") == 0 || strcmp(argv[i], "--config") == 0) && i + 1 < argc) {
            *config = argv[++i];
            continue;
        }
        if (strncmp(argv[i], "--config=", 9) == 0) {
            *config = argv[i] + 9;
            continue;
        }
        fprintf(stderr, "whistle validate: %s '%s'\n",
                strcmp(argv[i], "-c") == 0 || strcmp(argv[i], "--config") == 0
                    ? "missing FILE after"
                    : "unknown option",
                argv[i]);
        return -1;
    }
    if (i >= argc) {
        fputs("whistle validate: no FILE given\n", stderr);
        return -1;
    }
    return i;
}

int wh_cmd_validate(int argc, char **argv)
{
    const char *config = NULL;
    wh_config_t *cfg = NULL;
    run_t run = { 0 };
    int first = parse_args(argc, argv, &config), rc = WH_EXIT_INVALID;

    if (first <= 0) {
        if (first < 0)
            fputs("usage: whistle validate [-c whistle.yaml] FILE... (see --help)\n", stderr);
        return first == 0 ? WH_EXIT_OK : WH_EXIT_USAGE;
    }
    run.diag = wh_diag_new();
    if (run.diag == NULL) {
        fputs("whistle validate: out of memory\n", stderr);
        return WH_EXIT_INVALID;
    }
    if (config != NULL && wh_config_load(config, run.diag, &cfg) == 0)
        run.cfg = cfg;
    for (int i = first; i < argc; i++)
        check_file(&run, argv[i]);
    wh_diag_print(run.diag, stderr);
    if (wh_diag_errors(run.diag) == 0) {
        printf("ok: %d file%s\n", argc - first, argc - first == 1 ? "" : "s");
        rc = WH_EXIT_OK;
    }
    for (size_t i = 0; i < run.nseen; i++)
        free(run.seen[i].name);
    free(run.seen);
    wh_config_free(cfg);
    wh_diag_free(run.diag);
    return rc;
}
