/* whistle verify [-c whistle.yaml] (SPEC §7): re-hashes every ticket's event
 * log and compares it with the stored chain, so that an edited, removed or
 * reordered event row shows. The database is opened read-only: verify never
 * creates, migrates or locks it, and may run beside a live server. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "engine/diag.h"
#include "engine/error.h"
#include "engine/store.h"
#include "src/cmd.h"
#include "src/config.h"

#define VERIFY_DEFAULT_CONFIG "whistle.yaml"

static void usage(FILE *out)
{
    fputs("usage: whistle verify [-c whistle.yaml]\n\n"
          "Checks every ticket's hash chain in the database the config names: each\n"
          "event row is hashed again and compared with the stored hash and with the\n"
          "ticket's record of its last event. The database is opened read-only.\n\n"
          "  -c, --config FILE  the server config (default ./whistle.yaml)\n"
          "  -h, --help         show this help\n\n"
          "Prints \"verify: N tickets, M events, every hash chain intact\" and exits 0,\n"
          "or prints the first broken row (\"verify: broken: ticket T…, event seq N\")\n"
          "on stderr and exits 1. Exit 1 too when the config or the database cannot be\n"
          "read; 2 on a usage error.\n",
          out);
}

static int usage_error(const char *msg, const char *arg)
{
    fprintf(stderr, "whistle verify: %s%s%s%s\n", msg, arg ? " '" : "", arg ? arg : "",
            arg ? "'" : "");
    fputs("usage: whistle verify [-c whistle.yaml] (see --help)\n", stderr);
    return WH_EXIT_USAGE;
}

/* Returns -1 after --help, WH_EXIT_USAGE on a usage error, or 0. */
static int parse_args(int argc, char **argv, const char **config)
{
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (strcmp(arg, "-h") == 0 || strcmp(arg, "--help") == 0)
            return -1;
        if (strcmp(arg, "-c") == 0 || strcmp(arg, "--config") == 0) {
            if (i + 1 >= argc)
                return usage_error("missing FILE after", arg);
            *config = argv[++i];
        } else if (strncmp(arg, "--config=", 9) == 0 && arg[9] != '\0') {
            *config = arg + 9;
        } else if (arg[0] == '-') {
            return usage_error("unknown option", arg);
        } else {
            return usage_error("unexpected argument", arg);
        }
    }
    return 0;
}

/* SQLite would only say "unable to open database file"; a missing file
 * deserves a sentence of its own. */
static int check_file(const char *path)
{
    struct stat st;
    if (stat(path, &st) != 0) {
        if (errno == ENOENT)
            fprintf(stderr,
                    "whistle verify: no database at %s (`whistle serve` creates it on first "
                    "start)\n",
                    path);
        else
            fprintf(stderr, "whistle verify: cannot read %s: %s\n", path, strerror(errno));
        return -1;
    }
    if (!S_ISREG(st.st_mode)) {
        fprintf(stderr, "whistle verify: %s is not a database file\n", path);
        return -1;
    }
    return 0;
}

static int verify_database(const wh_config_t *cfg)
{
    wh_store_t *store = NULL;
    int64_t tickets = 0, events = 0;
    char err[512] = "", broken[256] = "";
    int rc;

    if (check_file(cfg->database) != 0)
        return WH_EXIT_INVALID;
    rc = wh_store_open(cfg->database, cfg->durability == WH_DURABILITY_FULL, true, &store, err,
                       sizeof(err));
    if (rc != 0) {
        /* The store's message names the path only for some failures. */
        if (strstr(err, cfg->database) != NULL)
            fprintf(stderr, "whistle verify: %s\n", err);
        else
            fprintf(stderr, "whistle verify: %s: %s\n", cfg->database,
                    err[0] ? err : wh_strerror(rc));
        return WH_EXIT_INVALID;
    }
    rc = wh_store_verify(store, &tickets, &events, broken, sizeof(broken));
    if (rc == 0)
        printf("verify: %lld ticket%s, %lld event%s, every hash chain intact\n", (long long)tickets,
               tickets == 1 ? "" : "s", (long long)events, events == 1 ? "" : "s");
    else if (rc == WH_ECORRUPT && broken[0] != '\0')
        fprintf(stderr, "verify: broken: %s\n", broken);
    else
        fprintf(stderr, "whistle verify: cannot read %s: %s (%s)\n", cfg->database, wh_strerror(rc),
                wh_store_errmsg(store));
    wh_store_close(store);
    return rc == 0 ? WH_EXIT_OK : WH_EXIT_INVALID;
}

int wh_cmd_verify(int argc, char **argv)
{
    const char *config = VERIFY_DEFAULT_CONFIG;
    wh_config_t *cfg = NULL;
    wh_diag_t *diag;
    int rc = parse_args(argc, argv, &config);

    if (rc != 0) {
        if (rc < 0)
            usage(stdout);
        return rc < 0 ? WH_EXIT_OK : rc;
    }
    if ((diag = wh_diag_new()) == NULL) {
        fputs("whistle verify: out of memory\n", stderr);
        return WH_EXIT_INVALID;
    }
    if (wh_config_load(config, diag, &cfg) != 0) {
        wh_diag_print(diag, stderr);
        if (wh_diag_errors(diag) == 0)
            fprintf(stderr, "whistle verify: cannot load %s\n", config);
        rc = WH_EXIT_INVALID;
        goto out;
    }
    rc = verify_database(cfg);
out:
    wh_config_free(cfg);
    wh_diag_free(diag);
    return rc;
}
